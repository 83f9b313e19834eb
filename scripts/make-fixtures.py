#!/usr/bin/python3
"""Generate the small checkpoint fixtures under test/fixtures/ (and their expected outputs).

How to run (Debian's python3 and Debian's torch; the pyenv `python3` on PATH will not do):

    apt-get update && apt-get install -y python3-torch
    /usr/bin/python3 scripts/make-fixtures.py            # writes test/fixtures/<name>/

CI does not run this script and has no torch: its outputs are committed. The script is
deterministic (fixed seeds, CPU only); re-running it rewrites the same bytes.

It needs nothing but torch (and the standard library): `transformers` and `safetensors` are not
packaged by Debian, so

  * GPT-2 (GPT2LMHeadModel, Hugging Face layout) is written out below in plain torch, op for op as
    transformers' modeling_gpt2.py computes it (eager attention, gelu_new, tied LM head);
  * the encoder-decoder is the PyTorch translation tutorial's Seq2SeqTransformer, its classes
    copied verbatim, running on torch.nn.Transformer;
  * safetensors files are written (and read back, by an independent little parser) by hand.

Every fixture folder holds config.json, model.safetensors and expected.json. Expected outputs are
computed in float64 from exactly the weights stored in the file (f32- or f16-rounded), and the
script asserts that a float32 run agrees (logits within 1e-4 relative, identical greedy tokens).
Weights are drawn with a wider spread than the default init, and a fixture's seed is re-drawn
(seed + 1000 k) until every logits row (forward and each greedy step) has a top1 - top2 margin
> MARGIN, so greedy tokens are robust to float noise, and no greedy output is one token repeated.
Only the folders named in main() are rewritten; other folders under test/fixtures/ are left alone.
See test/fixtures/README.md for the file formats.
"""

import json
import math
import os
import shutil
import struct
import sys

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn import Transformer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "test", "fixtures")
MARGIN = 1e-3
F32_REL_TOL = 1e-4
MAX_ATTEMPTS = 300
WORST_F32 = [0.0]  # largest relative float32-vs-float64 logits difference of the kept fixtures

torch.set_num_threads(1)  # bit-for-bit reproducible reductions

# ----------------------------------------------------------------------------------------------
# safetensors: writer and an independent reader
# ----------------------------------------------------------------------------------------------

ST_DTYPES = {  # safetensors dtype -> (torch dtype, bytes per element, struct code)
    "F32": (torch.float32, 4, "f"),
    "F16": (torch.float16, 2, "e"),
    "F64": (torch.float64, 8, "d"),
}
TORCH_TO_ST = {v[0]: k for k, v in ST_DTYPES.items()}


def tensor_bytes(t: Tensor) -> bytes:
    """Raw little-endian bytes of a tensor, row-major."""
    t = t.detach().contiguous().cpu()
    code = ST_DTYPES[TORCH_TO_ST[t.dtype]][2]
    vals = t.reshape(-1).tolist()
    return struct.pack("<%d%s" % (len(vals), code), *vals)


def write_safetensors(path: str, tensors: "list[tuple[str, Tensor]]") -> None:
    """Header: {name: {dtype, shape, data_offsets}} in the given order, then __metadata__;
    data packed contiguously in header order, no gaps; header padded with spaces to 8 bytes."""
    header = {}
    blobs = []
    offset = 0
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {
            "dtype": TORCH_TO_ST[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(b)],
        }
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def read_safetensors(path: str) -> "dict[str, tuple[str, list[int], list[float]]]":
    """Independent reader: parses the header, checks that the offsets tile the data exactly,
    decodes every tensor to a flat list of Python floats."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    assert n % 8 == 0, "header length not a multiple of 8"
    assert 8 + n <= len(raw)
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    meta = header.pop("__metadata__", None)
    assert meta == {"format": "pt"}, meta
    spans = []
    out = {}
    for name, info in header.items():
        assert set(info) == {"dtype", "shape", "data_offsets"}, info
        _, size, code = ST_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        count = 1
        for d in info["shape"]:
            count *= d
        assert end - start == count * size, (name, info)
        spans.append((start, end, name))
        out[name] = (info["dtype"], info["shape"], list(struct.unpack_from("<%d%s" % (count, code), data, start)))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        assert start == pos, "gap or overlap before %s" % name
        pos = end
    assert pos == len(data), "data section is %d bytes, tensors cover %d" % (len(data), pos)
    # tensors appear in the data in header order
    assert [s[2] for s in spans] == list(header.keys())
    return out


def check_roundtrip(path: str, tensors: "list[tuple[str, Tensor]]") -> None:
    back = read_safetensors(path)
    assert list(back.keys()) == [n for n, _ in tensors]
    for name, t in tensors:
        dt, shape, vals = back[name]
        assert dt == TORCH_TO_ST[t.dtype] and shape == list(t.shape), name
        ref = t.reshape(-1).tolist()
        assert all((a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(vals, ref)), name


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def margin_ok(logits: Tensor) -> "tuple[bool, float]":
    """Every row's top1 - top2 margin > MARGIN."""
    top2 = torch.topk(logits, 2, dim=-1).values
    m = float((top2[..., 0] - top2[..., 1]).min())
    return m > MARGIN, m


def assert_close_f32(l32: Tensor, l64: Tensor, what: str) -> float:
    l32 = l32.double()
    err = float((l32 - l64).abs().max())
    scale = max(1.0, float(l64.abs().max()))
    rel = err / scale
    assert rel < F32_REL_TOL, "%s: float32 logits differ from float64 by %g (relative %g)" % (what, err, rel)
    WORST_F32[0] = max(WORST_F32[0], rel)
    return rel


def rnd(g: torch.Generator, shape, std: float, mean: float = 0.0) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_expected(path: str, obj) -> None:
    """expected.json with one logits row per line (floats as repr: shortest round-trip form)."""
    def row(r):
        return "[" + ", ".join(repr(float(x)) for x in r) + "]"

    lines = ["{", '  "model_type": %s,' % json.dumps(obj["model_type"]), '  "forward": [']
    for i, case in enumerate(obj["forward"]):
        lines.append("    {")
        for k in ("tokens", "src_tokens"):
            if k in case:
                lines.append('      "%s": %s,' % (k, json.dumps(case[k])))
        lines.append('      "logits": [')
        rows = case["logits"]
        for j, r in enumerate(rows):
            lines.append("        " + row(r) + ("," if j + 1 < len(rows) else ""))
        lines.append("      ]")
        lines.append("    }" + ("," if i + 1 < len(obj["forward"]) else ""))
    lines.append("  ],")
    lines.append('  "generate": [')
    for i, case in enumerate(obj["generate"]):
        lines.append("    " + json.dumps(case) + ("," if i + 1 < len(obj["generate"]) else ""))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == json.loads(json.dumps(obj))  # same content as a plain dump
    with open(path, "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------------------------
# GPT-2 (Hugging Face GPT2LMHeadModel), plain torch
# ----------------------------------------------------------------------------------------------


def gelu_new(x: Tensor) -> Tensor:
    # transformers.activations.NewGELUActivation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def conv1d(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    # transformers.pytorch_utils.Conv1D: weight stored [in, out]; y = b + x @ w
    return torch.addmm(b, x.view(-1, x.size(-1)), w).view(x.size()[:-1] + (w.size(-1),))


def layer_norm(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    return nn.functional.layer_norm(x, (x.size(-1),), w, b, eps)


def gpt2_forward(W: "dict[str, Tensor]", cfg: dict, ids: "list[int]") -> Tensor:
    """GPT2LMHeadModel forward, one sequence, no cache. W: unprefixed names, one dtype.
    Returns logits [T, V]."""
    C, nh, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    eps = cfg["layer_norm_epsilon"]
    hd = C // nh
    T = len(ids)
    assert 1 <= T <= cfg["n_positions"]
    dt = W["wte.weight"].dtype
    idx = torch.tensor(ids, dtype=torch.long)
    h = W["wte.weight"][idx] + W["wpe.weight"][torch.arange(T)]  # [T, C]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    mask_value = torch.finfo(dt).min
    for i in range(L):
        p = "h.%d." % i
        a = layer_norm(h, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = conv1d(a, W[p + "attn.c_attn.weight"], W[p + "attn.c_attn.bias"])  # [T, 3C]
        q, k, v = qkv.split(C, dim=-1)
        q = q.view(T, nh, hd).transpose(0, 1)  # [nh, T, hd]
        k = k.view(T, nh, hd).transpose(0, 1)
        v = v.view(T, nh, hd).transpose(0, 1)
        s = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], hd ** 0.5, dtype=dt)
        s = torch.where(causal, s, torch.full([], mask_value, dtype=dt))
        pr = nn.functional.softmax(s, dim=-1)
        o = torch.matmul(pr, v)  # [nh, T, hd]
        o = o.transpose(0, 1).contiguous().view(T, C)  # merge heads
        o = conv1d(o, W[p + "attn.c_proj.weight"], W[p + "attn.c_proj.bias"])
        h = h + o
        m = layer_norm(h, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        m = conv1d(m, W[p + "mlp.c_fc.weight"], W[p + "mlp.c_fc.bias"])
        m = gelu_new(m)
        m = conv1d(m, W[p + "mlp.c_proj.weight"], W[p + "mlp.c_proj.bias"])
        h = h + m
    h = layer_norm(h, W["ln_f.weight"], W["ln_f.bias"], eps)
    return torch.matmul(h, W["wte.weight"].t())  # tied LM head


def gpt2_generate(W, cfg, prompt, max_new):
    """Greedy decoding (temperature 0): full forward each step. Returns (new tokens, step logits)."""
    ids = list(prompt)
    steps = []
    for _ in range(max_new):
        logits = gpt2_forward(W, cfg, ids)[-1]
        steps.append(logits)
        ids.append(int(torch.argmax(logits)))
    return ids[len(prompt) :], torch.stack(steps)


def gpt2_config(vocab, n_pos, n_embd, n_head, n_layer, eps, torch_dtype):
    # As transformers' GPT2Config.save_pretrained writes it (keys sorted).
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": vocab - 1,
        "embd_pdrop": 0.1,
        "eos_token_id": vocab - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": eps,
        "model_type": "gpt2",
        "n_ctx": n_pos,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_inner": None,
        "n_layer": n_layer,
        "n_positions": n_pos,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": torch_dtype,
        "use_cache": True,
        "vocab_size": vocab,
    }


def gpt2_weights(g, cfg) -> "list[tuple[str, Tensor]]":
    """Random weights, unprefixed hub names, in the hub file's order (parameters only)."""
    V, P, C, L = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"]
    out = [("wte.weight", rnd(g, (V, C), 0.4)), ("wpe.weight", rnd(g, (P, C), 0.3))]
    for i in range(L):
        p = "h.%d." % i
        out += [
            (p + "ln_1.weight", rnd(g, (C,), 0.3, 1.0)),
            (p + "ln_1.bias", rnd(g, (C,), 0.2)),
            (p + "attn.c_attn.weight", rnd(g, (C, 3 * C), 0.4)),
            (p + "attn.c_attn.bias", rnd(g, (3 * C,), 0.2)),
            (p + "attn.c_proj.weight", rnd(g, (C, C), 0.3)),
            (p + "attn.c_proj.bias", rnd(g, (C,), 0.2)),
            (p + "ln_2.weight", rnd(g, (C,), 0.3, 1.0)),
            (p + "ln_2.bias", rnd(g, (C,), 0.2)),
            (p + "mlp.c_fc.weight", rnd(g, (C, 4 * C), 0.4)),
            (p + "mlp.c_fc.bias", rnd(g, (4 * C,), 0.2)),
            (p + "mlp.c_proj.weight", rnd(g, (4 * C, C), 0.3)),
            (p + "mlp.c_proj.bias", rnd(g, (C,), 0.2)),
        ]
    out += [("ln_f.weight", rnd(g, (C,), 0.3, 1.0)), ("ln_f.bias", rnd(g, (C,), 0.2))]
    return out


def make_gpt2(name, seed, vocab, n_pos, n_embd, n_head, n_layer, eps=1e-5, dtype=torch.float32,
              prefix="", attn_bias=False, mid_len=None):
    cfg = gpt2_config(vocab, n_pos, n_embd, n_head, n_layer, eps,
                      "float16" if dtype == torch.float16 else "float32")
    assert n_embd % n_head == 0
    mid_len = mid_len or max(2, n_pos // 2 - 1)
    for attempt in range(MAX_ATTEMPTS):
        s = seed + 1000 * attempt
        g = torch.Generator().manual_seed(s)
        params = [(n, t.to(dtype)) for n, t in gpt2_weights(g, cfg)]  # stored (rounded) weights
        W64 = {n: t.double() for n, t in params}
        W32 = {n: t.float() for n, t in params}
        tok = lambda n: torch.randint(0, vocab, (n,), generator=g).tolist()
        fwd_tokens = [tok(1), tok(mid_len), tok(n_pos)]
        gen_cases = [(tok(1), n_pos - 1 - 2), (tok(3), n_pos - 3)]  # the 2nd reaches n_positions
        forward, generate, ok, worst = [], [], True, float("inf")
        for ids in fwd_tokens:
            l64 = gpt2_forward(W64, cfg, ids)
            l32 = gpt2_forward(W32, cfg, ids)
            assert_close_f32(l32, l64, "%s forward T=%d" % (name, len(ids)))
            good, m = margin_ok(l64)
            ok, worst = ok and good, min(worst, m)
            forward.append({"tokens": ids, "logits": l64.tolist()})
        for prompt, n_new in gen_cases:
            new64, steps64 = gpt2_generate(W64, cfg, prompt, n_new)
            new32, steps32 = gpt2_generate(W32, cfg, prompt, n_new)
            good, m = margin_ok(steps64)
            ok, worst = ok and good and varied(new64), min(worst, m)
            if good:
                assert new32 == new64, "%s: float32 greedy tokens differ" % name
                assert_close_f32(steps32, steps64, "%s generate" % name)
            generate.append({"tokens": prompt, "max_new_tokens": n_new, "new_tokens": new64})
        if ok:
            break
        print("  %s: seed %d: min top1-top2 margin %.3g or greedy output too repetitive; re-drawing"
              % (name, s, worst))
    else:
        raise SystemExit("%s: no seed with margins > %g" % (name, MARGIN))

    tensors = list(params)
    if attn_bias:  # the causal-mask buffer old checkpoints carry, placed after each block's ln_1
        buf = torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos).to(dtype)
        out = []
        for n, t in tensors:
            out.append((n, t))
            if n.endswith(".ln_1.bias"):
                out.append((n[: -len("ln_1.bias")] + "attn.bias", buf))
        tensors = out
    tensors = [(prefix + n, t) for n, t in tensors]
    # the logits of a GPT-2 fixture in float64 must not depend on the buffer or the prefix
    return save_fixture(name, cfg, tensors, {"model_type": "gpt2", "forward": forward, "generate": generate},
                        s, worst)


# ----------------------------------------------------------------------------------------------
# Seq2SeqTransformer: the PyTorch translation tutorial's classes, verbatim
# (https://pytorch.org/tutorials/beginner/translation_transformer.html)
# ----------------------------------------------------------------------------------------------

DEVICE = torch.device("cpu")


# helper Module that adds positional encoding to the token embedding to introduce a notion of word order.
class PositionalEncoding(nn.Module):
    def __init__(self,
                 emb_size: int,
                 dropout: float,
                 maxlen: int = 5000):
        super(PositionalEncoding, self).__init__()
        den = torch.exp(- torch.arange(0, emb_size, 2)* math.log(10000) / emb_size)
        pos = torch.arange(0, maxlen).reshape(maxlen, 1)
        pos_embedding = torch.zeros((maxlen, emb_size))
        pos_embedding[:, 0::2] = torch.sin(pos * den)
        pos_embedding[:, 1::2] = torch.cos(pos * den)
        pos_embedding = pos_embedding.unsqueeze(-2)

        self.dropout = nn.Dropout(dropout)
        self.register_buffer('pos_embedding', pos_embedding)

    def forward(self, token_embedding: Tensor):
        return self.dropout(token_embedding + self.pos_embedding[:token_embedding.size(0), :])


# helper Module to convert tensor of input indices into corresponding tensor of token embeddings
class TokenEmbedding(nn.Module):
    def __init__(self, vocab_size: int, emb_size):
        super(TokenEmbedding, self).__init__()
        self.embedding = nn.Embedding(vocab_size, emb_size)
        self.emb_size = emb_size

    def forward(self, tokens: Tensor):
        return self.embedding(tokens.long()) * math.sqrt(self.emb_size)


# Seq2Seq Network
class Seq2SeqTransformer(nn.Module):
    def __init__(self,
                 num_encoder_layers: int,
                 num_decoder_layers: int,
                 emb_size: int,
                 nhead: int,
                 src_vocab_size: int,
                 tgt_vocab_size: int,
                 dim_feedforward: int = 512,
                 dropout: float = 0.1):
        super(Seq2SeqTransformer, self).__init__()
        self.transformer = Transformer(d_model=emb_size,
                                       nhead=nhead,
                                       num_encoder_layers=num_encoder_layers,
                                       num_decoder_layers=num_decoder_layers,
                                       dim_feedforward=dim_feedforward,
                                       dropout=dropout)
        self.generator = nn.Linear(emb_size, tgt_vocab_size)
        self.src_tok_emb = TokenEmbedding(src_vocab_size, emb_size)
        self.tgt_tok_emb = TokenEmbedding(tgt_vocab_size, emb_size)
        self.positional_encoding = PositionalEncoding(
            emb_size, dropout=dropout)

    def forward(self,
                src: Tensor,
                trg: Tensor,
                src_mask: Tensor,
                tgt_mask: Tensor,
                src_padding_mask: Tensor,
                tgt_padding_mask: Tensor,
                memory_key_padding_mask: Tensor):
        src_emb = self.positional_encoding(self.src_tok_emb(src))
        tgt_emb = self.positional_encoding(self.tgt_tok_emb(trg))
        outs = self.transformer(src_emb, tgt_emb, src_mask, tgt_mask, None,
                                src_padding_mask, tgt_padding_mask, memory_key_padding_mask)
        return self.generator(outs)

    def encode(self, src: Tensor, src_mask: Tensor):
        return self.transformer.encoder(self.positional_encoding(
                            self.src_tok_emb(src)), src_mask)

    def decode(self, tgt: Tensor, memory: Tensor, tgt_mask: Tensor):
        return self.transformer.decoder(self.positional_encoding(
                          self.tgt_tok_emb(tgt)), memory,
                          tgt_mask)


def generate_square_subsequent_mask(sz):
    mask = (torch.triu(torch.ones((sz, sz), device=DEVICE)) == 1).transpose(0, 1)
    mask = mask.float().masked_fill(mask == 0, float('-inf')).masked_fill(mask == 1, float(0.0))
    return mask


# End of the tutorial's code. Below: the tutorial's greedy_decode, changed only to start from a
# given target prefix, to generate exactly max_new_tokens (no EOS stop) and to return the steps'
# logits; the tutorial converts the float mask to bool (True = masked), which is the same mask.


def greedy_decode(model, src, src_mask, prefix, max_new_tokens):
    memory = model.encode(src, src_mask)
    ys = torch.tensor(prefix, dtype=torch.long).reshape(-1, 1)
    steps = []
    for i in range(max_new_tokens):
        tgt_mask = (generate_square_subsequent_mask(ys.size(0))
                    .type(torch.bool)).to(DEVICE)
        out = model.decode(ys, memory, tgt_mask)
        out = out.transpose(0, 1)
        prob = model.generator(out[:, -1])
        steps.append(prob[0])
        _, next_word = torch.max(prob, dim=1)
        next_word = next_word.item()
        ys = torch.cat([ys, torch.ones(1, 1).type_as(src.data).fill_(next_word)], dim=0)
    return ys.reshape(-1).tolist()[len(prefix):], torch.stack(steps)


def s2s_forward(model, src_ids, tgt_ids, dtype):
    """The tutorial's model.forward with N=1: src_mask all-False (as translate() builds it),
    the causal float tgt_mask, no padding masks. Returns logits [T_tgt, V]."""
    src = torch.tensor(src_ids, dtype=torch.long).reshape(-1, 1)
    tgt = torch.tensor(tgt_ids, dtype=torch.long).reshape(-1, 1)
    src_mask = torch.zeros((len(src_ids), len(src_ids)), device=DEVICE).type(torch.bool)
    tgt_mask = generate_square_subsequent_mask(len(tgt_ids)).to(dtype)
    logits = model(src, tgt, src_mask, tgt_mask, None, None, None)  # [T, 1, V]
    # the same through encode/decode, with no masks where none are needed
    memory = model.encode(src, None)
    alt = model.generator(model.decode(tgt, memory, tgt_mask))
    assert torch.allclose(alt, logits, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)
    return logits[:, 0, :]


def s2s_randomize(model, g):
    """Overwrite every parameter with a wider random spread; LayerNorms get random weights too.
    The decoder's sublayer output projections (self_attn/multihead_attn out_proj, linear2) are
    drawn smaller, and biases small: otherwise their nearly position-independent part swamps the
    last target token and greedy decoding repeats one token forever."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".norm" in name:
                p.copy_(rnd(g, p.shape, 0.3, 1.0) if name.endswith("weight") else rnd(g, p.shape, 0.05))
            elif name.endswith("tok_emb.embedding.weight"):
                p.copy_(rnd(g, p.shape, 0.4))
            elif name.startswith("transformer.decoder.") and name.endswith(("out_proj.weight", "linear2.weight")):
                p.copy_(rnd(g, p.shape, 0.1))
            elif p.dim() >= 2:
                p.copy_(rnd(g, p.shape, 0.4))
            else:
                p.copy_(rnd(g, p.shape, 0.05))


def varied(new_tokens) -> bool:
    """Greedy output that is not (nearly) one token repeated: at least max(3, n // 3) distinct."""
    n = len(new_tokens)
    return len(set(new_tokens)) >= min(n, max(3, n // 3))


def make_seq2seq(name, seed, num_encoder_layers, num_decoder_layers, emb_size, nhead,
                 src_vocab_size, tgt_vocab_size, dim_feedforward, max_new_tokens=6):
    cfg = {
        "num_encoder_layers": num_encoder_layers,
        "num_decoder_layers": num_decoder_layers,
        "emb_size": emb_size,
        "nhead": nhead,
        "src_vocab_size": src_vocab_size,
        "tgt_vocab_size": tgt_vocab_size,
        "dim_feedforward": dim_feedforward,
    }
    for attempt in range(MAX_ATTEMPTS):
        s = seed + 1000 * attempt
        torch.manual_seed(s)  # the constructor's own init; every parameter is overwritten below
        g = torch.Generator().manual_seed(s)
        model = Seq2SeqTransformer(**cfg)
        s2s_randomize(model, g)
        model.eval()
        m32 = model
        m64 = Seq2SeqTransformer(**cfg)
        m64.load_state_dict(model.state_dict())
        m64 = m64.double().eval()
        src_tok = lambda n: torch.randint(0, src_vocab_size, (n,), generator=g).tolist()
        tgt_tok = lambda n: torch.randint(0, tgt_vocab_size, (n,), generator=g).tolist()
        fwd_cases = [(src_tok(1), tgt_tok(1)), (src_tok(7), tgt_tok(5)),
                     (src_tok(1), tgt_tok(5)), (src_tok(7), tgt_tok(1))]
        gen_cases = [(src_tok(7), tgt_tok(1)), (src_tok(1), tgt_tok(2))]
        forward, generate, ok, worst = [], [], True, float("inf")
        with torch.no_grad():
            for src_ids, tgt_ids in fwd_cases:
                l64 = s2s_forward(m64, src_ids, tgt_ids, torch.float64)
                l32 = s2s_forward(m32, src_ids, tgt_ids, torch.float32)
                assert_close_f32(l32, l64, "%s forward" % name)
                good, m = margin_ok(l64)
                ok, worst = ok and good, min(worst, m)
                forward.append({"tokens": tgt_ids, "src_tokens": src_ids, "logits": l64.tolist()})
            for src_ids, prefix in gen_cases:
                src = torch.tensor(src_ids, dtype=torch.long).reshape(-1, 1)
                src_mask = torch.zeros((len(src_ids), len(src_ids))).type(torch.bool)
                new64, steps64 = greedy_decode(m64, src, src_mask, prefix, max_new_tokens)
                new32, steps32 = greedy_decode(m32, src, src_mask, prefix, max_new_tokens)
                good, m = margin_ok(steps64)
                ok, worst = ok and good and varied(new64), min(worst, m)
                if good:
                    assert new32 == new64, "%s: float32 greedy tokens differ" % name
                    assert_close_f32(steps32, steps64, "%s generate" % name)
                    # each step's logits equal the last row of a full forward on the prefix so far
                    full = prefix + new64
                    last = s2s_forward(m64, src_ids, full[:-1], torch.float64)
                    assert torch.allclose(last[len(prefix) - 1 :], steps64, rtol=0, atol=1e-12)
                generate.append({"tokens": prefix, "src_tokens": src_ids,
                                 "max_new_tokens": max_new_tokens, "new_tokens": new64})
        if ok:
            break
        print("  %s: seed %d: min top1-top2 margin %.3g or greedy output too repetitive; re-drawing"
              % (name, s, worst))
    else:
        raise SystemExit("%s: no seed with margins > %g" % (name, MARGIN))

    tensors = list(model.state_dict().items())
    names = [n for n, _ in tensors]
    assert "positional_encoding.pos_embedding" in names
    assert model.positional_encoding.pos_embedding.shape == (5000, 1, emb_size)
    return save_fixture(name, cfg, tensors, {"model_type": "seq2seq", "forward": forward, "generate": generate},
                        s, worst)


# ----------------------------------------------------------------------------------------------


def save_fixture(name, cfg, tensors, expected, seed, worst):
    f32 = WORST_F32[0]
    WORST_F32[0] = 0.0
    d = os.path.join(OUT, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    st = os.path.join(d, "model.safetensors")
    write_safetensors(st, tensors)
    check_roundtrip(st, tensors)
    write_json(os.path.join(d, "config.json"), cfg)
    write_expected(os.path.join(d, "expected.json"), expected)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print("%-14s seed %-6d min margin %-8.3g f32 rel diff %-8.2g %d tensors, %d bytes"
          % (name, seed, worst, f32, len(tensors), size))
    return {"name": name, "seed": seed, "margin": worst, "bytes": size}


def main():
    print("torch %s" % torch.__version__)
    os.makedirs(OUT, exist_ok=True)
    # Fail loudly if nn.Transformer took its fused fast path; it must not here (batch_first=False).
    fast = []
    orig = getattr(torch, "_transformer_encoder_layer_fwd", None)
    if orig is not None:
        def spy(*a, **k):
            fast.append(1)
            return orig(*a, **k)
        torch._transformer_encoder_layer_fwd = spy
    made = [
        make_gpt2("gpt2-tiny", 1, vocab=97, n_pos=16, n_embd=24, n_head=3, n_layer=2, attn_bias=True),
        make_gpt2("gpt2-odd", 2, vocab=53, n_pos=8, n_embd=20, n_head=5, n_layer=1, eps=1e-6,
                  prefix="transformer."),
        make_gpt2("gpt2-f16", 3, vocab=61, n_pos=12, n_embd=32, n_head=4, n_layer=2,
                  dtype=torch.float16, attn_bias=True),
        make_seq2seq("seq2seq-tiny", 4, num_encoder_layers=2, num_decoder_layers=2, emb_size=24, nhead=3,
                     src_vocab_size=41, tgt_vocab_size=37, dim_feedforward=40),
        make_seq2seq("seq2seq-deep", 5, num_encoder_layers=1, num_decoder_layers=3, emb_size=16, nhead=2,
                     src_vocab_size=29, tgt_vocab_size=31, dim_feedforward=24),
    ]
    if orig is not None:
        torch._transformer_encoder_layer_fwd = orig
    assert not fast, "nn.TransformerEncoderLayer fast path was used"
    total = sum(m["bytes"] for m in made)
    print("total %d bytes; encoder fast path used: %s" % (total, bool(fast)))
    assert total < 3 * 1024 * 1024


if __name__ == "__main__":
    main()
