#!/usr/bin/python3
"""bench/torch_toy_rlsc.py: the toy benchmark's work in PyTorch, for comparison with confit.

    /usr/bin/python3 bench/torch_toy_rlsc.py MODEL_DIR PROMPTS_JSON [--reps 1] [--threads 2]

MODEL_DIR is a Hugging Face Qwen2 folder (config.json, model.safetensors; read by the tiny
loader below, no transformers). PROMPTS_JSON is written by bench/toy_bench.lua:
{"rlsc_prompt": [ids], "eval_prompts": [[ids], ...], "pretrain": {"ids": [[...]], "prompt_lens":
[...], "lens": [...]}, "n": 16, "temperature": 0.5, "max_new_tokens": 64, "eos": 256}.

Prints one JSON line per measurement, like toy_bench.lua:
  rlsc_step      one RLSC L2 step: generate n samples of one prompt at T (KV cache), teacher-
                 forced log-probs at T, loss -sum((p_old + 0.1) log p), backward, AdamW
  eval_pass      sampling n completions of every eval prompt at T (no grad)
  pretrain_step  one supervised step (batch of prompt||completion rows, completion-token CE,
                 backward, AdamW), the unit of recipes/pretrain_toy.lua
torch.set_num_threads(--threads) (toy_bench.lua passes the thread count confit ran with, so
that both run on as many threads; every line records it), float32, Debian's CPU build.
Times are wall time (time.perf_counter).
"""
import argparse
import json
import math
import struct
import sys
import time


def positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {v}")
    return v


def parse_args():
    ap = argparse.ArgumentParser(prog="bench/torch_toy_rlsc.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", metavar="MODEL_DIR", help="a Qwen2 model folder")
    ap.add_argument("prompts_json", metavar="PROMPTS_JSON", help="the job toy_bench.lua writes")
    ap.add_argument("--reps", type=positive_int, default=1, help="repetitions of each measurement (default 1)")
    ap.add_argument("--threads", type=positive_int, default=2, help="torch.set_num_threads (default 2)")
    return ap.parse_args()


# the flags are read before PyTorch is imported: --help and a mistake need no PyTorch
ARGS = parse_args() if __name__ == "__main__" else None

try:
    import torch  # noqa: E402
except ImportError as e:
    if __name__ != "__main__":
        raise
    # one line, not a traceback: PyTorch is optional (the comparison only)
    sys.exit(f"bench/torch_toy_rlsc.py: no PyTorch for {sys.executable} ({e}); bench/toy_bench.lua --no-torch runs confit alone")


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    dtypes = {"F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16,
              "F16": torch.float16, "I64": torch.int64, "I32": torch.int32}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        s, t = e["data_offsets"]
        buf = bytearray(data[base + s:base + t])
        out[name] = torch.frombuffer(buf, dtype=dtypes[e["dtype"]]).reshape(e["shape"]).float()
    return out


class Qwen2(torch.nn.Module):
    def __init__(self, cfg, weights):
        super().__init__()
        self.cfg = cfg
        self.H = cfg["num_attention_heads"]
        self.Hkv = cfg.get("num_key_value_heads", self.H)
        self.D = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.L = cfg["num_hidden_layers"]
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        theta = cfg.get("rope_theta", 10000.0)
        self.params = torch.nn.ParameterDict(
            {k.replace(".", "__"): torch.nn.Parameter(v.clone()) for k, v in weights.items()})
        self.tied = "lm_head.weight" not in weights
        inv = 1.0 / (theta ** (torch.arange(0, self.D, 2, dtype=torch.float32) / self.D))
        pos = torch.arange(cfg.get("max_position_embeddings", 2048), dtype=torch.float32)
        freqs = torch.outer(pos, inv)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def p(self, name):
        return self.params[name.replace(".", "__")]

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, pos):  # x [B, H, T, D], pos [T]
        c, s = self.cos[pos], self.sin[pos]
        h = self.D // 2
        rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
        return x * c + rot * s

    def hidden(self, ids, cache=None, pos0=0):
        B, T = ids.shape
        x = self.p("model.embed_tokens.weight")[ids]
        pos = torch.arange(pos0, pos0 + T)
        for i in range(self.L):
            pre = f"model.layers.{i}."
            h = self.rms(x, self.p(pre + "input_layernorm.weight"))
            q = torch.nn.functional.linear(h, self.p(pre + "self_attn.q_proj.weight"), self.p(pre + "self_attn.q_proj.bias"))
            k = torch.nn.functional.linear(h, self.p(pre + "self_attn.k_proj.weight"), self.p(pre + "self_attn.k_proj.bias"))
            v = torch.nn.functional.linear(h, self.p(pre + "self_attn.v_proj.weight"), self.p(pre + "self_attn.v_proj.bias"))
            q = self.rope(q.view(B, T, self.H, self.D).transpose(1, 2), pos)
            k = self.rope(k.view(B, T, self.Hkv, self.D).transpose(1, 2), pos)
            v = v.view(B, T, self.Hkv, self.D).transpose(1, 2)
            if cache is not None:
                if i in cache:
                    k = torch.cat([cache[i][0], k], dim=2)
                    v = torch.cat([cache[i][1], v], dim=2)
                cache[i] = (k, v)
            if self.Hkv != self.H:
                k = k.repeat_interleave(self.H // self.Hkv, dim=1)
                v = v.repeat_interleave(self.H // self.Hkv, dim=1)
            S = k.shape[2]
            att = (q @ k.transpose(-1, -2)) / math.sqrt(self.D)
            if T > 1:
                mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
                att = att.masked_fill(~mask, float("-inf"))
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.H * self.D)
            x = x + torch.nn.functional.linear(o, self.p(pre + "self_attn.o_proj.weight"))
            h = self.rms(x, self.p(pre + "post_attention_layernorm.weight"))
            g = torch.nn.functional.linear(h, self.p(pre + "mlp.gate_proj.weight"))
            u = torch.nn.functional.linear(h, self.p(pre + "mlp.up_proj.weight"))
            x = x + torch.nn.functional.linear(torch.nn.functional.silu(g) * u, self.p(pre + "mlp.down_proj.weight"))
        return self.rms(x, self.p("model.norm.weight"))

    def head(self):
        return self.p("model.embed_tokens.weight") if self.tied else self.p("lm_head.weight")

    def logits(self, ids, cache=None, pos0=0):
        return self.hidden(ids, cache, pos0) @ self.head().t()

    @torch.no_grad()
    def generate(self, prompts, n, temperature, max_new, eos, seed):
        """prompts of equal length (the toy's); n samples each; returns lists of tokens."""
        g = torch.Generator().manual_seed(seed)
        ids = torch.tensor([p for p in prompts for _ in range(n)])
        B, P = ids.shape
        cache = {}
        logits = self.logits(ids, cache, 0)[:, -1]
        toks = []
        done = torch.zeros(B, dtype=torch.bool)
        for t in range(max_new):
            if temperature == 0:
                tok = logits.argmax(-1)
            else:
                tok = torch.multinomial((logits / temperature).softmax(-1), 1, generator=g).squeeze(1)
            toks.append(tok)
            done |= tok == eos
            if bool(done.all()):
                break
            logits = self.logits(tok.view(B, 1), cache, P + t)[:, -1]
        rows = torch.stack(toks, 1).tolist()
        out = []
        for row in rows:  # cut each row after its first EOS (the EOS kept, as confit does)
            out.append(row[:row.index(eos) + 1] if eos in row else row)
        return out


def completion_logprobs(m, seqs, prompt_lens, temperature):
    """[B] sums of completion-token log-probs (right padding)."""
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (T - len(s)) for s in seqs])
    logits = m.logits(ids)
    lp = torch.log_softmax(logits[:, :-1] / temperature, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = torch.zeros_like(lp)
    for b, s in enumerate(seqs):
        mask[b, prompt_lens[b] - 1:len(s) - 1] = 1
    return (lp * mask).sum(-1)


def main():
    args = ARGS
    torch.set_num_threads(args.threads)
    model_dir, prompts_path, reps = args.model_dir, args.prompts_json, args.reps
    cfg = json.load(open(model_dir + "/config.json"))
    W = load_safetensors(model_dir + "/model.safetensors")
    m = Qwen2(cfg, W)
    job = json.load(open(prompts_path))
    n, T, max_new, eos = job["n"], job["temperature"], job["max_new_tokens"], job["eos"]
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)

    for r in range(reps):
        t0 = time.perf_counter()
        p = job["rlsc_prompt"]
        outs = m.generate([p], n, T, max_new, eos, seed=r + 1)
        t_gen = time.perf_counter() - t0
        seqs = [p + o for o in outs]
        lp = completion_logprobs(m, seqs, [len(p)] * len(seqs), T)
        w = lp.detach().double().exp() + 0.1
        loss = -(w.float() * lp).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        ntok = sum(len(o) for o in outs)
        print(json.dumps({"impl": "torch", "bench": "rlsc_step", "rep": r + 1, "seconds": dt,
                          "gen_seconds": t_gen, "samples": len(outs), "tokens": ntok,
                          "mean_length": ntok / len(outs), "threads": torch.get_num_threads()}),
              flush=True)

    for r in range(reps):
        t0 = time.perf_counter()
        ntok = 0
        chunk = 32
        ep = job["eval_prompts"]
        for i in range(0, len(ep), chunk):
            outs = m.generate(ep[i:i + chunk], n, T, max_new, eos, seed=i + 1)
            ntok += sum(len(o) for o in outs)
        dt = time.perf_counter() - t0
        print(json.dumps({"impl": "torch", "bench": "eval_pass", "rep": r + 1, "seconds": dt,
                          "questions": len(ep), "samples": len(ep) * n, "tokens": ntok,
                          "tokens_per_s": ntok / dt, "threads": torch.get_num_threads()}),
              flush=True)

    pt = job.get("pretrain")
    if pt:
        popt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01)
        for r in range(reps):
            t0 = time.perf_counter()
            seqs = [row[:ln] for row, ln in zip(pt["ids"], pt["lens"])]
            lp = completion_logprobs(m, seqs, pt["prompt_lens"], 1.0)
            ntok = sum(ln - pl for ln, pl in zip(pt["lens"], pt["prompt_lens"]))
            loss = -lp.sum() / ntok
            popt.zero_grad()
            loss.backward()
            popt.step()
            dt = time.perf_counter() - t0
            print(json.dumps({"impl": "torch", "bench": "pretrain_step", "rep": r + 1, "seconds": dt,
                              "rows": len(seqs), "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
