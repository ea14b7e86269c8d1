"""Weights in and out: Hugging Face GPT-2 files, the book's checkpoints, and explorer's own.

Three formats, told apart by the tensor names (and metadata), never by the file name:

- ``hf``: a ``GPT2LMHeadModel`` file or directory (``model.safetensors``, sharded safetensors,
  or ``pytorch_model.bin``). Its linear layers are ``Conv1D`` ([in, out], the transpose of
  ``nn.Linear``), q/k/v are fused in ``c_attn``, and the head is tied to ``wte``.
- ``book``: a ``state_dict`` of the book's GPTModel (``model.pth``), or of an explorer model
  saved with ``torch.save``: explorer's own names.
- ``explorer``: a safetensors file written by :func:`save_checkpoint`; its metadata carries the
  resolved spec as JSON, so ``explorer build ckpt.safetensors`` needs no YAML.

Pickles are never trusted: ``.bin`` / ``.pth`` files are read with ``torch.load(...,
weights_only=True)``, which refuses anything but tensors and plain containers.
"""

import json
import math
import os
import pickle
import re
from pathlib import Path

import torch

from .errors import ExplorerError

SPEC_METADATA_KEY = "explorer.spec"  # safetensors metadata: the resolved spec, as JSON

# Hugging Face GPT-2 -> explorer names. True marks a Conv1D weight, stored transposed.
HF_TOP = {
    "wte.weight": ("tok_emb.weight", False),
    "wpe.weight": ("pos_emb.weight", False),
    "ln_f.weight": ("final_norm.scale", False),
    "ln_f.bias": ("final_norm.shift", False),
}
HF_BLOCK = {  # under h.{i}. -> under trf_blocks.{i}.
    "ln_1.weight": ("norm1.scale", False),
    "ln_1.bias": ("norm1.shift", False),
    "attn.c_proj.weight": ("att.out_proj.weight", True),
    "attn.c_proj.bias": ("att.out_proj.bias", False),
    "ln_2.weight": ("norm2.scale", False),
    "ln_2.bias": ("norm2.shift", False),
    "mlp.c_fc.weight": ("ff.layers.0.weight", True),
    "mlp.c_fc.bias": ("ff.layers.0.bias", False),
    "mlp.c_proj.weight": ("ff.layers.2.weight", True),
    "mlp.c_proj.bias": ("ff.layers.2.bias", False),
}
QKV = ("W_query", "W_key", "W_value")  # the order of c_attn's three slices
HF_IGNORED = ("attn.bias", "attn.masked_bias")  # causal-mask buffers in older HF saves

# What the GPT-2 layout can express: the component each kind must be, and the params it may set.
GPT2_COMPONENTS = {"norm": "layernorm", "activation": "gelu_tanh", "ffn": "mlp", "attention": "mha",
                   "positional": "learned", "residual": "pre_norm"}
GPT2_FREE_PARAMS = {"norm": ("eps", "impl"), "activation": ("impl",), "ffn": ("expansion", "bias"),
                    "attention": ("impl",)}
# Hugging Face activation names that compute GELU's tanh approximation (gelu_fast is the same
# polynomial, factored).
HF_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


# -- reading files ---------------------------------------------------------------------------

class Checkpoint:
    """Tensors under explorer's names, plus where each came from (for error messages)."""

    def __init__(self, path, fmt, tensors, origin=None, spec=None, hf_config=None):
        self.path = str(path)
        self.format = fmt  # "hf", "book" or "explorer"
        self.tensors = tensors  # explorer name -> tensor
        self.origin = origin or {}  # explorer name -> the name in the file, where it differs
        self.spec = spec  # explorer: the saved spec as a dict
        self.hf_config = hf_config  # hf: config.json beside the weights, if there is one

    def name(self, key):
        """``key`` as the user finds it in the file: ``trf_blocks.0.att.W_query.bias (h.0.attn.c_attn.bias)``."""
        src = self.origin.get(key)
        return f"{key} ({src})" if src and src != key else key


def _weights_files(path):
    """The weight files of ``path`` (a file, or a Hugging Face / training output directory)."""
    path = Path(path)
    if not path.exists():
        raise ExplorerError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    for name in ("model.safetensors", "pytorch_model.bin", "model.pth"):
        if (path / name).is_file():
            return [path / name]
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            try:
                weight_map = json.loads((path / index).read_text())["weight_map"]
            except (ValueError, KeyError, TypeError, OSError) as exc:
                raise ExplorerError(f"{path / index}: not a readable shard index: {exc}") from None
            return [path / name for name in dict.fromkeys(weight_map.values())]
    found = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pth"))
    if len(found) == 1:
        return [path / found[0]]
    raise ExplorerError(
        f"{path}: no weights found; expected model.safetensors, pytorch_model.bin or model.pth"
        + (f" (it has {', '.join(found)}: name one of them)" if found else ""))


def _is_safetensors(path):
    """Whether ``path`` starts like a safetensors file: an 8-byte header length, then ``{``."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size <= os.path.getsize(path) - 8


def _read_safetensors(path, tensors_too=True):
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if tensors_too else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ExplorerError(f"{path}: not a readable safetensors file: {exc}") from None
    return tensors, metadata


def _read_pickle(path):
    """A torch checkpoint, unpickled with ``weights_only=True``: tensors and containers only."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()
                       if "Unsupported" in line or "global" in line.lower()), "")
        raise ExplorerError(
            f"{path}: refused: the file holds Python objects, not only tensors, and explorer "
            f"never unpickles them (torch.load weights_only=True)"
            + (f": {detail}" if detail else "")) from None
    except Exception as exc:  # zip or pickle damage: torch raises RuntimeError, EOFError, ...
        raise ExplorerError(f"{path}: not a readable torch checkpoint: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if isinstance(obj, dict):
        for wrapper in ("model_state_dict", "state_dict", "model"):  # training checkpoints
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        what = type(obj).__name__ + (f" with keys {', '.join(map(str, list(obj)[:5]))}"
                                     if isinstance(obj, dict) else "")
        raise ExplorerError(f"{path}: holds a {what}, not a state_dict of named tensors")
    return obj


def read_checkpoint(path):
    """Read ``path`` and return a :class:`Checkpoint` with the tensors under explorer's names."""
    tensors, metadata = {}, {}
    files = _weights_files(path)
    for file in files:
        if _is_safetensors(file):
            part, meta = _read_safetensors(file)
            metadata = metadata or meta
        else:
            part = _read_pickle(file)
        tensors.update(part)
    source = files[0] if len(files) == 1 else path
    fmt = detect_format(tensors, metadata, source)
    if fmt == "explorer":
        return Checkpoint(source, fmt, tensors, spec=_spec_dict(metadata, source))
    if fmt == "book":
        return Checkpoint(source, fmt, *_from_book(tensors))
    config = files[0].parent / "config.json"
    hf_config = None
    if config.is_file():
        try:
            hf_config = json.loads(config.read_text())
        except (ValueError, OSError) as exc:
            raise ExplorerError(f"{config}: not readable JSON: {exc}") from None
    return Checkpoint(source, fmt, *from_hf(tensors, source), hf_config=hf_config)


def detect_format(tensors, metadata, path="checkpoint"):
    """``"explorer"``, ``"hf"`` or ``"book"``, from the metadata and the tensor names."""
    if SPEC_METADATA_KEY in (metadata or {}):
        return "explorer"
    names = [k.removeprefix("transformer.") for k in tensors]
    if any(k == "wte.weight" or re.match(r"h\.\d+\.", k) for k in names):
        return "hf"
    names = [_strip_wrappers(k) for k in tensors]
    if any(k == "tok_emb.weight" or k.startswith("trf_blocks.") for k in names):
        return "book"
    shown = ", ".join(list(tensors)[:4]) or "no tensors"
    raise ExplorerError(
        f"{path}: not a GPT-2 checkpoint explorer knows (it has {shown}); expected Hugging Face "
        "GPT-2 names (transformer.h.0.attn.c_attn.weight, ...) or the book's "
        "(trf_blocks.0.att.W_query.weight, ...)")


def _strip_wrappers(key):
    """Drop the prefixes torch.compile (``_orig_mod.``) and DDP (``module.``) add to names."""
    for prefix in ("_orig_mod.", "module."):
        key = key.removeprefix(prefix)
    return key


def _from_book(tensors):
    out, origin = {}, {}
    for key, tensor in tensors.items():
        name = _strip_wrappers(key)
        out[name] = tensor
        if name != key:
            origin[name] = key
    return out, origin


def from_hf(tensors, path="checkpoint"):
    """GPT2LMHeadModel tensors -> (explorer-named tensors, origin): Conv1D weights transposed to
    ``nn.Linear``'s [out, in], ``c_attn`` split into W_query, W_key, W_value."""
    out, origin = {}, {}

    def put(name, tensor, src, conv=False):
        if conv:  # Conv1D (in, out) -> Linear (out, in)
            if tensor.dim() != 2:
                raise ExplorerError(f"{path}: {src} has shape {list(tensor.shape)}; a GPT-2 "
                                    "Conv1D weight is a matrix (in_features, out_features)")
            tensor = tensor.t()
        out[name] = tensor.contiguous()
        origin[name] = src

    for src, tensor in tensors.items():
        key = src.removeprefix("transformer.")
        if key == "lm_head.weight":
            put("out_head.weight", tensor, src)
            continue
        if key in HF_TOP:
            name, conv = HF_TOP[key]
            put(name, tensor, src, conv)
            continue
        m = re.fullmatch(r"h\.(\d+)\.(.+)", key)
        if m is None:
            raise ExplorerError(f"{path}: {src} is not part of GPT2LMHeadModel's layout; "
                                "explorer reads GPT-2 language-model checkpoints only")
        i, rest = m.groups()
        if rest in HF_IGNORED:
            continue
        if rest in ("attn.c_attn.weight", "attn.c_attn.bias"):
            width = tensor.shape[-1]
            if width % 3:
                raise ExplorerError(f"{path}: {src} has shape {list(tensor.shape)}; its last "
                                    "dimension should hold q, k and v (3 * n_embd)")
            leaf = rest.rsplit(".", 1)[1]
            for proj, part in zip(QKV, tensor.split(width // 3, dim=-1)):
                # weight: (C, 3C) -> three (C, C) slices, each transposed to Linear's (out, in)
                put(f"trf_blocks.{i}.att.{proj}.{leaf}", part, src, conv=leaf == "weight")
            continue
        if rest not in HF_BLOCK:
            raise ExplorerError(f"{path}: {src} is not part of GPT2LMHeadModel's layout; "
                                "explorer reads GPT-2 language-model checkpoints only")
        name, conv = HF_BLOCK[rest]
        put(f"trf_blocks.{i}.{name}", tensor, src, conv)
    return out, origin


def _spec_dict(metadata, path):
    try:
        doc = json.loads(metadata[SPEC_METADATA_KEY])
    except ValueError as exc:
        raise ExplorerError(f"{path}: the spec in its metadata is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ExplorerError(f"{path}: the spec in its metadata is a {type(doc).__name__}, not a mapping")
    return doc


def spec_from_checkpoint(path, overrides=(), plugins=None):
    """The :class:`explorer.Spec` an explorer checkpoint was saved with (``--set`` overrides apply)."""
    from .spec import spec_from_dict

    files = _weights_files(path)
    if len(files) != 1 or not _is_safetensors(files[0]):
        raise ExplorerError(f"{path}: not an explorer checkpoint (a safetensors file written by "
                            "explorer); give a YAML spec and --weights instead")
    _, metadata = _read_safetensors(files[0], tensors_too=False)
    if SPEC_METADATA_KEY not in metadata:
        raise ExplorerError(f"{files[0]}: has no explorer spec in its metadata (a Hugging Face or "
                            f"other safetensors file); give a YAML spec and --weights {path}")
    return spec_from_dict(_spec_dict(metadata, files[0]), source=str(files[0]),
                          overrides=overrides, plugins=plugins)


# -- checking a checkpoint against a spec ----------------------------------------------------

def _yaml(value):
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _shape(tensor):
    return list(tensor.shape)


def _kind_of(model, key):
    """The component kind (``components.<kind>``) of the module that holds ``key``, if any."""
    module, kind = model, getattr(model, "explorer_kind", None)
    for part in key.split(".")[:-1]:
        module = getattr(module, part, None)  # Sequential children are attributes "0", "1", ...
        if not isinstance(module, torch.nn.Module):
            break
        kind = getattr(module, "explorer_kind", kind)
    return kind


def _spec_diffs(saved, spec):
    """(dotted key, saved value, spec value) where a saved spec dict and ``spec`` differ, in order.

    Dropout rates, the seed, the name and the analyses are left out: they do not change what the
    weights compute.
    """
    now = spec.to_dict()
    out = []
    if saved.get("tokenizer") != now["tokenizer"]:
        out.append(("tokenizer", saved.get("tokenizer"), now["tokenizer"]))
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "qkv_bias"):
        a, b = saved.get("model", {}).get(key), now["model"][key]
        if a != b:
            out.append((f"model.{key}", a, b))
    comps = saved.get("components", {})
    for kind, choice in now["components"].items():
        old = comps.get(kind, {})
        if old.get("name") != choice["name"]:
            out.append((f"components.{kind}", old.get("name"), choice["name"]))
            continue
        for p in sorted(set(old) | set(choice)):
            if p != "name" and old.get(p) != choice.get(p):
                out.append((f"components.{kind}.{p}", old.get(p), choice.get(p)))
    return out


def _fix(ck, spec, kind=None):
    """For an explorer checkpoint: ``set <key>: <value>`` from its saved spec, else None."""
    if ck.spec is None:
        return None
    diffs = _spec_diffs(ck.spec, spec)
    near = [d for d in diffs if kind and d[0].startswith(f"components.{kind}")] or diffs
    if not near:
        return None
    key, saved, _ = near[0]
    return f"set {key}: {_yaml(saved)} (the checkpoint's spec)"


def _mismatch(ck, text):
    return ExplorerError(f"{ck.path}: {text}")


def _n_blocks(keys):
    idx = [int(m.group(1)) for k in keys if (m := re.match(r"trf_blocks\.(\d+)\.", k))]
    return max(idx) + 1 if idx else None


def _block0(key):
    """``trf_blocks.7.att.mask`` -> ``trf_blocks.0.att.mask``: the same tensor in the first block."""
    return re.sub(r"^trf_blocks\.\d+\.", "trf_blocks.0.", key)


def _in_model_order(keys, model_keys):
    """Sort checkpoint-only ``keys`` as the model would list them: by block, then beside the
    model tensor that shares the longest prefix (W_query.bias by W_query.weight)."""
    first = {}
    for i, key in enumerate(model_keys):
        parts = _block0(key).split(".")
        for n in range(1, len(parts)):
            first.setdefault(".".join(parts[:n]), i)

    def order(key):
        m = re.match(r"trf_blocks\.(\d+)\.", key)
        parts = _block0(key).split(".")
        pos = next((first[".".join(parts[:n])] for n in range(len(parts) - 1, 0, -1)
                    if ".".join(parts[:n]) in first), len(model_keys))
        return (int(m.group(1)) if m else -1, pos)

    return sorted(keys, key=order)


def _check_layers(ck, spec, expected, buffers):
    n_ck, n = _n_blocks(ck.tensors), spec.model.n_layers
    if n_ck is None or _n_blocks(expected) is None or n_ck == n:
        return
    if n_ck > n:
        extra = [k for k in _in_model_order(ck.tensors, expected) if k.startswith(f"trf_blocks.{n}.")]
        block_buffers = {_block0(b) for b in buffers}
        key = next((k for k in extra if _block0(k) not in block_buffers), extra[0])
        raise _mismatch(ck, f"checkpoint has {ck.name(key)} but the spec has model.n_layers: {n}; "
                            f"set model.n_layers: {n_ck}")
    key = next((k for k in expected if k.startswith(f"trf_blocks.{n_ck}.")), f"trf_blocks.{n_ck}")
    raise _mismatch(ck, f"checkpoint has no {key} (it has {n_ck} blocks) but the spec has "
                        f"model.n_layers: {n}; set model.n_layers: {n_ck}")


def _check_tying(ck, spec, model):
    tied = model.out_head.weight is model.tok_emb.weight
    tying = f"components.weight_tying: {spec.components['weight_tying'].name}"
    head, emb = ck.tensors.get("out_head.weight"), ck.tensors.get("tok_emb.weight")
    if tied and head is not None:
        if emb is not None and head.shape == emb.shape and torch.equal(head, emb):
            del ck.tensors["out_head.weight"]  # a tied save that kept both names
            return
        raise _mismatch(ck, f"checkpoint has a separate {ck.name('out_head.weight')}, not equal to "
                            f"the token embedding, but the spec has {tying}; "
                            "set components.weight_tying: none")
    if not tied and head is None and emb is not None:
        raise _mismatch(ck, f"checkpoint has no out_head.weight (its output head is tied to the "
                            f"token embedding) but the spec has {tying}; "
                            "set components.weight_tying: tied")


def _shape_fix(ck, spec, model, key, have, want):
    cfg = spec.model
    if key in ("tok_emb.weight", "out_head.weight"):
        if have[1] != want[1]:
            return f"set model.emb_dim: {have[1]}"
        return f"set model.vocab_size: {have[0]}"
    if key == "pos_emb.weight":
        if have[1] != want[1]:
            return f"set model.emb_dim: {have[1]}"
        return f"set model.context_length: {have[0]}"
    if key.endswith(".att.mask") and len(have) == 2:
        return f"set model.context_length: {have[0]}"
    ffn = spec.components["ffn"]
    if (re.fullmatch(r"trf_blocks\.\d+\.ff\.layers\.0\.weight", key) and ffn.name == "mlp"
            and len(have) == 2 and have[1] == cfg.emb_dim and have[0] % cfg.emb_dim == 0):
        return f"set components.ffn.expansion: {have[0] // cfg.emb_dim}"
    kind = _kind_of(model, key)
    return _fix(ck, spec, kind) or (
        f"change components.{kind} (now {spec.components[kind].name}) to the one the checkpoint "
        "was saved with" if kind in spec.components else "make the spec match the checkpoint")


QKV_BIAS = re.compile(rf"trf_blocks\.\d+\.att\.({'|'.join(QKV)})\.bias")


def _missing_fix(ck, spec, model, key):
    """The rest of the sentence "checkpoint has no <key> ...": why, and the spec key to change."""
    if QKV_BIAS.fullmatch(key) and spec.model.qkv_bias:
        return " but the spec has model.qkv_bias: true; set model.qkv_bias: false"
    return _absent_fix(ck, spec, model, key, False)


def _unexpected_fix(ck, spec, model, key):
    """The rest of the sentence "checkpoint has <key> ...": why, and the spec key to change."""
    if QKV_BIAS.fullmatch(key) and not spec.model.qkv_bias:
        return " but the spec has model.qkv_bias: false; set model.qkv_bias: true"
    return _absent_fix(ck, spec, model, key, True)


def _absent_fix(ck, spec, model, key, in_checkpoint):
    kind = _kind_of(model, key)
    choice = spec.components.get(kind)
    has_bias = choice.params.get("bias") if choice is not None else None
    if key.endswith(".bias") and isinstance(has_bias, bool) and has_bias != in_checkpoint:
        return (f" but the spec has components.{kind}.bias: {_yaml(has_bias)}; "
                f"set components.{kind}.bias: {_yaml(in_checkpoint)}")
    what = " but the model has no such tensor" if in_checkpoint else ", which the model needs"
    fix = _fix(ck, spec, kind)
    if choice is not None:
        return (f"{what} (the spec's components.{kind} is {choice.name}); "
                + (fix or f"use the {kind} the checkpoint was saved with"))
    return f"{what}; " + (fix or "make the spec match the checkpoint")


def _check_against(ck, spec, model):
    """Raise one ExplorerError naming the first tensor that does not fit ``model``."""
    state = model.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    if model.out_head.weight is model.tok_emb.weight:
        state.pop("out_head.weight", None)  # the same tensor as tok_emb.weight
    _check_tying(ck, spec, model)
    _check_layers(ck, spec, [k for k in state if k not in buffers], buffers)
    for key, want in state.items():
        have = ck.tensors.get(key)
        if have is None:
            if key in buffers:
                continue  # rebuilt from the spec (causal masks, rotary tables)
            raise _mismatch(ck, f"checkpoint has no {key} {_shape(want)}"
                                f"{_missing_fix(ck, spec, model, key)}")
        if have.shape != want.shape:
            raise _mismatch(ck, f"checkpoint has {ck.name(key)} with shape {_shape(have)} but the "
                                f"spec makes {_shape(want)}; "
                                f"{_shape_fix(ck, spec, model, key, _shape(have), _shape(want))}")
    for key in _in_model_order([k for k in ck.tensors if k not in state], list(state)):
        have = ck.tensors[key]
        if ck.format == "hf" and key.endswith(".bias") and not torch.any(have):
            del ck.tensors[key]  # Conv1D always has a bias; an all-zero one is no bias at all
            continue
        raise _mismatch(ck, f"checkpoint has {ck.name(key)}{_unexpected_fix(ck, spec, model, key)}")


def _check_gpt2_spec(ck, spec):
    """A Hugging Face checkpoint holds GPT-2's weights: the spec must compute GPT-2."""
    problem = gpt2_incompatibility(spec)
    if problem:
        key, reason = problem
        raise _mismatch(ck, f"a Hugging Face GPT-2 checkpoint needs a GPT-2 spec, but {key} {reason}")


def _check_semantics(ck, spec):
    """What tensor shapes cannot show: head count, eps, activation, components, ..."""
    if ck.format == "explorer":
        for key, saved, now in _spec_diffs(ck.spec, spec):
            raise _mismatch(ck, f"checkpoint was saved with {key}: {_yaml(saved)} but the spec has "
                                f"{_yaml(now)}; set {key}: {_yaml(saved)}")
    if ck.format != "hf":
        return
    cfg = ck.hf_config or {}
    checks = [
        ("n_head", "model.n_heads", spec.model.n_heads),
        ("n_layer", "model.n_layers", spec.model.n_layers),
        ("n_embd", "model.emb_dim", spec.model.emb_dim),
    ]
    for hf_key, key, value in checks:
        if hf_key in cfg and cfg[hf_key] != value:
            raise _mismatch(ck, f"config.json has {hf_key}: {cfg[hf_key]} but the spec has "
                                f"{key}: {value}; set {key}: {cfg[hf_key]}")
    eps = spec.components["norm"].params.get("eps")
    hf_eps = cfg.get("layer_norm_epsilon")
    if isinstance(hf_eps, (int, float)) and eps is not None and not math.isclose(hf_eps, eps, rel_tol=1e-6):
        raise _mismatch(ck, f"config.json has layer_norm_epsilon: {hf_eps} but the spec has "
                            f"components.norm.eps: {eps}; set components.norm.eps: {hf_eps}")
    act = cfg.get("activation_function", "gelu_new")
    if act not in HF_GELU_TANH:
        raise _mismatch(ck, f"config.json has activation_function: {act}, which "
                            "components.activation: gelu_tanh does not compute; explorer loads "
                            f"GPT-2 checkpoints with {', '.join(HF_GELU_TANH)}")
    for hf_key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                       ("add_cross_attention", False)):
        if cfg.get(hf_key, ok) != ok:
            raise _mismatch(ck, f"config.json has {hf_key}: {_yaml(cfg[hf_key])}, which the mha "
                                "attention does not compute; explorer loads only "
                                f"{hf_key}: {_yaml(ok)}")


def load_weights(model, spec, path):
    """Load the checkpoint at ``path`` into ``model`` (built from ``spec``), in place.

    The format is detected from the file's tensor names. Any disagreement between checkpoint
    and spec raises one :class:`explorer.ExplorerError` naming the first tensor that does not
    fit and the spec key to change. Returns ``model``.
    """
    ck = read_checkpoint(path)
    if any(p.is_meta for p in model.parameters()):
        raise ExplorerError(f"{path}: cannot load weights into a model on the meta device")
    if ck.format == "hf":
        _check_gpt2_spec(ck, spec)
    _check_against(ck, spec, model)
    _check_semantics(ck, spec)
    state = model.state_dict()
    with torch.no_grad():
        for key, tensor in ck.tensors.items():
            state[key].copy_(tensor)  # into the model's own storage, in its dtype and device
    return model


# -- writing ---------------------------------------------------------------------------------

def _atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``: an
    interrupted run leaves the old file (or none), never a truncated one."""
    from .atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        write(str(tmp))


def _save_safetensors(tensors, path, metadata):
    from safetensors.torch import save_file

    tensors = {k: t.detach().to("cpu").contiguous() for k, t in tensors.items()}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_checkpoint(model, spec, path):
    """Write ``model``'s parameters to a safetensors file whose metadata carries ``spec``.

    Buffers (causal masks, rotary tables) are left out: they are rebuilt from the spec. A tied
    head is stored once, as ``tok_emb.weight``. Returns the path.
    """
    from . import __version__

    params = dict(model.named_parameters())  # a tied head appears once, as tok_emb.weight
    # Plugin files relative to the checkpoint's folder: loading resolves them against it.
    saved = spec.to_dict(relative_to=Path(path).parent)
    metadata = {"format": "pt", SPEC_METADATA_KEY: json.dumps(saved),
                "explorer.version": __version__}
    _save_safetensors(params, path, metadata)
    return str(path)


def gpt2_incompatibility(spec):
    """The first spec key that the GPT-2 layout cannot express, as ``(key, reason)``, or None."""
    registry = spec.plugin_manager.registry() if spec.plugin_manager else None
    for kind, name in GPT2_COMPONENTS.items():
        choice = spec.components[kind]
        if choice.name != name:
            return f"components.{kind}", f"is {choice.name}; GPT-2 has only {name}"
        defaults = registry.component(kind, name).defaults() if registry else {}
        for p, value in choice.params.items():
            if p not in GPT2_FREE_PARAMS.get(kind, ()) and p in defaults and value != defaults[p]:
                return (f"components.{kind}.{p}",
                        f"is {_yaml(value)}; GPT-2 has only {_yaml(defaults[p])}")
    tying = spec.components["weight_tying"].name
    if tying not in ("none", "tied"):
        return "components.weight_tying", f"is {tying}; GPT-2 has only tied or none"
    return None


def to_hf(model, spec):
    """``model``'s weights under GPT2LMHeadModel's names and layout (the inverse of from_hf).

    Missing biases (qkv_bias false, an MLP without bias) are written as zeros, which computes
    the same. The head is written as ``lm_head.weight`` only when untied.
    """
    state = {k: v.detach() for k, v in model.state_dict().items()}
    out = {}
    for hf, (name, conv) in HF_TOP.items():
        out[f"transformer.{hf}"] = state[name].t() if conv else state[name]
    for i in range(spec.model.n_layers):
        p = f"trf_blocks.{i}."
        for hf, (name, conv) in HF_BLOCK.items():
            tensor = state.get(p + name)
            if tensor is None:  # a bias the spec leaves out
                tensor = torch.zeros_like(state[p + name.replace(".bias", ".weight")][:, 0])
            out[f"transformer.h.{i}.{hf}"] = tensor.t() if conv else tensor
        weights = [state[f"{p}att.{q}.weight"].t() for q in QKV]  # each (C, C) as Conv1D (in, out)
        out[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat(weights, dim=1)  # (C, 3C)
        biases = [state.get(f"{p}att.{q}.bias") for q in QKV]
        out[f"transformer.h.{i}.attn.c_attn.bias"] = torch.cat(
            [b if b is not None else torch.zeros_like(w[0]) for b, w in zip(biases, weights)])
    if model.out_head.weight is not model.tok_emb.weight:
        out["lm_head.weight"] = state["out_head.weight"]
    return out


def hf_config(spec, tied):
    """The config.json of GPT2LMHeadModel for ``spec``."""
    m = spec.model
    eot = 50256 if m.vocab_size > 50256 else None  # GPT-2's <|endoftext|>, if the vocab has it
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": m.vocab_size,
        "n_positions": m.context_length,
        "n_embd": m.emb_dim,
        "n_layer": m.n_layers,
        "n_head": m.n_heads,
        "n_inner": spec.components["ffn"].params["expansion"] * m.emb_dim,
        "activation_function": "gelu_new",  # GELU's tanh approximation
        "layer_norm_epsilon": spec.components["norm"].params["eps"],
        "embd_pdrop": m.dropout.embedding,
        "attn_pdrop": m.dropout.attention,
        "resid_pdrop": m.dropout.residual,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": tied,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "use_cache": True,
    }


def check_hf_exportable(spec):
    """Raise an ExplorerError naming the spec key GPT2LMHeadModel cannot express, if any."""
    problem = gpt2_incompatibility(spec)
    if problem:
        key, reason = problem
        raise ExplorerError(f"cannot export {spec.source or spec.name} to Hugging Face GPT-2: "
                            f"{key} {reason}")


def export_hf(model, spec, out_dir):
    """Write ``out_dir/model.safetensors`` and ``out_dir/config.json`` for
    ``transformers.GPT2LMHeadModel.from_pretrained(out_dir)``. Specs the GPT-2 layout cannot
    express are refused with the key that is the reason. Returns the paths written.
    """
    check_hf_exportable(spec)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExplorerError(f"{out_dir}: exists and is not a directory")
    tied = model.out_head.weight is model.tok_emb.weight
    weights, config = out_dir / "model.safetensors", out_dir / "config.json"
    _save_safetensors(to_hf(model, spec), weights, {"format": "pt"})
    text = json.dumps(hf_config(spec, tied), indent=2) + "\n"
    _atomic_write(config, lambda tmp: Path(tmp).write_text(text))
    return [str(config), str(weights)]
