/* ld_any.cuh - element i of a buffer of any dtype as a double (masks: nonzero = true), apart so
 * that the CPU emulation of the kernels (tests/c/cuda_emu.h) reads buffers as the GPU does. From
 * its includer: bf16, __bfloat162float and the CF_DTYPE_* codes.
 */
#ifndef CF_LD_ANY_CUH
#define CF_LD_ANY_CUH

__device__ __forceinline__ double ld_any(const void *p, int dt, int64_t i) {
  switch (dt) {
    case CF_DTYPE_F32: return ((const float *)p)[i];
    case CF_DTYPE_F64: return ((const double *)p)[i];
    case CF_DTYPE_BF16: return __bfloat162float(((const bf16 *)p)[i]);
    case CF_DTYPE_I32: return ((const int32_t *)p)[i];
    case CF_DTYPE_I64: return (double)((const int64_t *)p)[i];
    default: return 0;
  }
}

#endif
