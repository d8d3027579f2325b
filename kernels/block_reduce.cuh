/* block_reduce.cuh - sums and maxima over a warp and over a block, by warp shuffles, apart so that
 * the CPU emulation of the kernels (tests/c/cuda_emu.h) runs these very reductions: it needs from
 * its includer __shfl_xor_sync, __syncthreads, threadIdx, blockDim, fmaxf and INFINITY
 * (cuda_internal.cuh, or the emulation).
 */
#ifndef CF_BLOCK_REDUCE_CUH
#define CF_BLOCK_REDUCE_CUH

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Sum over the block (every thread gets the result). blockDim.x a multiple of 32, <= 1024. */
template <typename A>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A part[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) part[w] = v;
  __syncthreads();
  A r = lane < nw ? part[lane] : (A)0;
  r = warp_sum(r);
  return r;
}

__device__ __forceinline__ float block_max(float v) {
  __shared__ float part[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) part[w] = v;
  __syncthreads();
  float r = lane < nw ? part[lane] : -INFINITY;
  return warp_max(r);
}

#endif
