#!/usr/bin/python3
"""torch_blocks.py - PyTorch CPU counterpart of the C benchmark "blocks_fwd_bwd".

    /usr/bin/python3 bench/torch_blocks.py [--iters N] [--threads 2]

Prints one JSON line:
  {"bench":"blocks_fwd_bwd","impl":"torch","tokens_per_s":...,"ms_per_iter":...,"machine":...,...}

Exact workload (the C benchmark must mirror it):
  - f32 on CPU, torch.set_num_threads(2) (--threads), fixed seed 0.
  - input x: [B=8, T=128, d=256] ~ N(0, 1), no gradient; upstream gradient g: [8, 128, 256] ~ N(0, 1)
    (fixed); one iteration = forward of two blocks, then backward of sum(y * g), i.e. y.backward(g),
    producing the gradients of all parameters of both blocks (grads reset to None before each
    iteration, so no accumulation cost).
  - block (pre-norm, Llama/Qwen2 style, no biases anywhere):
        h = rmsnorm(x) * w_attn_norm            rmsnorm(x) = x / sqrt(mean(x^2, -1) + 1e-6)
        q, k, v = h Wq^T, h Wk^T, h Wv^T        W*: [256, 256]; 4 heads of 64, no GQA
        q, k = rope(q), rope(k)                 rotate-half, inv_freq = 1/10000^(2i/64), positions 0..127
        a = softmax(q k^T / sqrt(64) + causal mask) v     (explicit: scores [8, 4, 128, 128])
        x = x + a Wo^T                          Wo: [256, 256]
        h = rmsnorm(x) * w_mlp_norm
        x = x + (silu(h Wg^T) * (h Wu^T)) Wd^T  Wg, Wu: [688, 256]; Wd: [256, 688]
    parameters ~ N(0, 1/fan_in), norm weights 1.
  - timing: 3 warm-up iterations, then at least 10 timed iterations and at least 2 s; reports the
    median ms per iteration; tokens_per_s = 8 * 128 / median seconds.
  - gflop_per_iter: the matmul FLOPs of forward (+2x for backward), attention counted unmasked.
"""
import argparse
import json
import math
import platform
import statistics
import sys
import time


def parse_args():
    ap = argparse.ArgumentParser(prog="bench/torch_blocks.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10, help="at least this many timed iterations (default 10)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="and at least this long (default 2)")
    args = ap.parse_args()
    if args.iters < 1 or args.threads < 1 or not 0 < args.min_seconds <= 3600:
        ap.error("--iters and --threads must be >= 1, --min-seconds in (0, 3600]")
    return args


# the flags are read before PyTorch is imported: --help and a mistake need no PyTorch
ARGS = parse_args() if __name__ == "__main__" else None

try:
    import torch  # noqa: E402
except ImportError as e:
    if __name__ != "__main__":
        raise
    # one line, not a traceback: PyTorch is optional (the comparison only)
    sys.exit(f"bench/torch_blocks.py: no PyTorch for {sys.executable} ({e}); bench/run_core_bench.sh skips it then")

B, T, D, HEADS, FFN = 8, 128, 256, 4, 688
HD = D // HEADS
EPS, THETA = 1e-6, 10000.0


def rmsnorm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope_tables():
    inv_freq = 1.0 / (THETA ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)                       # [T, HD]
    return emb.cos(), emb.sin()


def rotate_half(x):
    return torch.cat([-x[..., HD // 2:], x[..., : HD // 2]], dim=-1)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()

        def lin(o, i):
            return torch.nn.Parameter(torch.randn(o, i) / math.sqrt(i))

        self.attn_norm = torch.nn.Parameter(torch.ones(D))
        self.wq, self.wk, self.wv, self.wo = lin(D, D), lin(D, D), lin(D, D), lin(D, D)
        self.mlp_norm = torch.nn.Parameter(torch.ones(D))
        self.wg, self.wu, self.wd = lin(FFN, D), lin(FFN, D), lin(D, FFN)

    def forward(self, x, cos, sin, mask):
        h = rmsnorm(x, self.attn_norm)                            # [B, T, D]
        q = (h @ self.wq.T).view(B, T, HEADS, HD).transpose(1, 2)  # [B, H, T, HD]
        k = (h @ self.wk.T).view(B, T, HEADS, HD).transpose(1, 2)
        v = (h @ self.wv.T).view(B, T, HEADS, HD).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        s = (q @ k.transpose(-1, -2)) / math.sqrt(HD) + mask      # [B, H, T, T]
        a = torch.softmax(s, dim=-1) @ v                          # [B, H, T, HD]
        x = x + a.transpose(1, 2).reshape(B, T, D) @ self.wo.T
        h = rmsnorm(x, self.mlp_norm)
        return x + (torch.nn.functional.silu(h @ self.wg.T) * (h @ self.wu.T)) @ self.wd.T


def machine(threads):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}; {threads} threads; torch {torch.__version__}; {platform.system()} {platform.machine()}"


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList([Block(), Block()])
    x = torch.randn(B, T, D)
    g = torch.randn(B, T, D)
    cos, sin = rope_tables()
    mask = torch.full((T, T), float("-inf")).triu(1)

    def step():
        for p in blocks.parameters():
            p.grad = None
        y = x
        for blk in blocks:
            y = blk(y, cos, sin, mask)
        y.backward(g)

    for _ in range(3):
        step()
    times = []
    start = time.perf_counter()
    while len(times) < args.iters or time.perf_counter() - start < args.min_seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n_tok = B * T
    fwd = 2 * (8 * n_tok * D * D + 6 * n_tok * D * FFN + 4 * B * T * T * D)   # two blocks
    print(json.dumps({
        "bench": "blocks_fwd_bwd", "impl": "torch",
        "tokens_per_s": round(n_tok / med, 1), "ms_per_iter": round(med * 1e3, 3),
        "ms_mean": round(statistics.mean(times) * 1e3, 3), "iters": len(times),
        "gflop_per_iter": round(3 * fwd / 1e9, 3), "gflops": round(3 * fwd / 1e9 / med, 2),
        "config": {"B": B, "T": T, "d": D, "heads": HEADS, "ffn": FFN, "blocks": 2, "dtype": "f32",
                   "threads": args.threads},
        "machine": machine(args.threads),
    }))


if __name__ == "__main__":
    main()
