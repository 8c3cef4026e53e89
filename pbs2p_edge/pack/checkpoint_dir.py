"""The compressed-checkpoint directory (docs/FORMAT.md §9): its file names, its one writer and its reader.

numpy + safetensors.numpy only, so the exporters read it without torch; checkpoint/save.py turns a compressed
PyTorch model into write_checkpoint's arguments.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError, Pbs2pError
from .layout import FORMAT_VERSION, LayerMeta
from .packer import PackedLayer, honest_bits, packed_layers
from .safetensors_stream import RowPieces, Tensor, write_safetensors
from .tiers import EMBED_TIERS, GridLayer, round_trip

CONFIG_JSON = "config.json"  # the Hugging Face model config
META_JSON = "pbs2p.json"  # format version, compress config, per-linear metadata, stats
PACKED = "packed.safetensors"  # "<linear module name>.<array>" -> uint8 streams / float16 scales
DENSE = "dense.safetensors"  # every other state-dict tensor (tied copies stored once)
# [choice] dense tensors of more than this many bytes are written as dense-00001-of-0000N.safetensors instead of
# DENSE, so that writing a large model's (a streamed compression, a partial one) holds one shard in memory at a time
DENSE_SHARD_BYTES = 1 << 30
GRID = "grid.safetensors"  # "<linear module name>" -> uint8 blocks of a linear on a grid or f16 tier (tiers.py)
CHECKPOINT_KIND = "pbs2p-checkpoint"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    config: dict  # config.json
    meta: dict  # pbs2p.json
    layers: dict[str, PackedLayer]  # linear module name -> packed layer (binary tier), in file order
    grids: dict[str, GridLayer]  # linear module name -> a linear on a grid or the f16 tier
    dense: dict[str, np.ndarray]  # state-dict name -> array
    tied: dict[str, str]  # state-dict name -> the name whose array it shares
    # the output head's matrix (a dense name; the token embedding's when tied) as the compression stored it in the
    # embedding tier, Hessian-compensated (checkpoint/head.py); None: no such form (the exporters round to nearest)
    head: tuple[str, GridLayer] | None = None

    @property
    def compress_config(self) -> dict:
        return self.meta["compress_config"]

    @property
    def embed_tier(self) -> str | None:
        """The tier the compression chose for the token embedding / head (None: the exporter's default)."""
        return self.meta.get("embed_tier")

    def linear_tiers(self) -> dict[str, str]:
        """Every compressed linear -> its tier name, in model order (pbs2p.json's "tiers"; a checkpoint from
        before tiers has packed layers only)."""
        return dict(self.meta.get("tiers") or {n: "pbs2p" for n in self.layers})

    @property
    def model_name(self) -> str:
        """The name the exporters record: extra.model_id, else config.json's _name_or_path, else its model_type."""
        extra = self.meta.get("extra") or {}
        names = (extra.get("model_id"), self.config.get("_name_or_path"), self.config["model_type"])
        return next(v for v in names if isinstance(v, str) and v)

    @property
    def blocks(self) -> tuple[int, int] | None:
        """(compressed, total) decoder blocks; None for a checkpoint written before the count was recorded (all)."""
        b = self.meta.get("blocks")
        return None if b is None else (b["compressed"], b["total"])

    def require_complete(self) -> None:
        """FormatError for a checkpoint of `compress --blocks K` (a quick look): its other blocks are not
        compressed, so no file of ours can hold them."""
        if self.blocks and self.blocks[0] < self.blocks[1]:
            k, total = self.blocks
            raise FormatError(f"{self.path} compressed only the first {k} of {total} decoder blocks "
                              f"(compress --blocks {k}); export needs all of them: compress again without --blocks")

    def embedding_blocks(self, name: str, tier_name: str) -> np.ndarray | None:
        """The stored blocks of dense matrix `name` (the token embedding or the head) in tier `tier_name` when the
        compression made them (the head, in its own tier); None: the caller rounds the matrix to nearest."""
        if self.head is None:
            return None
        key, g = self.head
        return g.blocks if self.tied.get(name, name) == key and g.tier == tier_name else None

    def embedding_values(self, name: str, tier_name: str) -> np.ndarray:
        """Dense matrix `name` (the token embedding or the head) as a file in tier `tier_name` holds it, float32: the
        head's stored blocks where the compression made them, else rounded to nearest (tiers.round_trip)."""
        if self.embedding_blocks(name, tier_name) is not None:
            return self.head[1].decode()
        return round_trip(tier_name, self.dense[self.tied.get(name, name)])

    @property
    def tokenizer_json(self) -> Path | None:
        p = self.path / "tokenizer.json"
        return p if p.is_file() else None


def _read_grids(path: Path, described, head) -> tuple[dict[str, GridLayer], tuple[str, GridLayer] | None]:
    """The grid layers pbs2p.json describes and the head's stored form ("head": its dense name and shape), both
    blocks in GRID (the head's under its dense name)."""
    if not isinstance(described, dict):
        raise FormatError(f"{path / META_JSON}: 'grid_layers' is not a table")
    if head is not None and not (isinstance(head, dict) and isinstance(head.get("tensor"), str)):
        raise FormatError(f"{path / META_JSON}: 'head' is not a table naming its tensor")
    if not described and head is None:
        return {}, None
    blocks = _read_safetensors(path / GRID)

    def layer(name: str, d: dict, what: str) -> GridLayer:
        if name not in blocks:
            raise FormatError(f"{path}: {what} {name} has no blocks in {GRID}")
        try:
            return GridLayer(str(d["tier"]), int(d["rows"]), int(d["cols"]), blocks.pop(name))
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{path}: bad metadata of {what} {name} ({e})") from None
        except Pbs2pError as e:
            raise FormatError(f"{path}: {what} {name}: {e}") from None

    grids = {name: layer(name, d, "grid layer") for name, d in described.items()}
    stored_head = None if head is None else (head["tensor"], layer(head["tensor"], head, "head"))
    if blocks:
        raise FormatError(f"{path}: blocks of no described grid layer, e.g. {sorted(blocks)[0]}")
    return grids, stored_head


def dense_shard_name(k: int, n: int) -> str:
    """The file name of dense shard k (0-based) of n."""
    return f"dense-{k + 1:05d}-of-{n:05d}.safetensors"


def _read_dense(path: Path) -> dict[str, np.ndarray]:
    """The dense tensors: DENSE, or every shard dense-K-of-N.safetensors for K = 1..N (all must be there)."""
    shards = sorted(path.glob("dense-*-of-*.safetensors"))
    if (path / DENSE).is_file() or not shards:
        if shards:
            raise FormatError(f"{path}: holds both {DENSE} and dense shards ({shards[0].name})")
        return _read_safetensors(path / DENSE)
    n = len(shards)
    expected = [dense_shard_name(k, n) for k in range(n)]
    if [s.name for s in shards] != expected:
        raise FormatError(f"{path}: dense shards are not {expected[0]} .. {expected[-1]} (found {shards[0].name} .. "
                          f"{shards[-1].name}); the checkpoint is incomplete")
    dense: dict[str, np.ndarray] = {}
    for s in shards:
        part = _read_safetensors(s)
        again = set(part) & set(dense)
        if again:
            raise FormatError(f"{s}: {sorted(again)[0]} is stored in two dense shards")
        dense.update(part)
    return dense


def is_checkpoint(path) -> bool:
    """True when `path` is a directory holding a pbs2p.json of ours (contents not validated)."""
    p = Path(path) / META_JSON
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("format") == CHECKPOINT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"{path.parent}: not a pbs2p checkpoint ({path.name} is missing)") from None
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(d, dict):
        raise FormatError(f"{path}: expected a JSON object")
    return d


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    if not path.is_file():
        raise FormatError(f"{path.parent}: checkpoint is incomplete ({path.name} is missing)")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError / OSError / ValueError
        raise FormatError(f"{path}: corrupt safetensors file ({e})") from None


def _check_config(path: Path, config: dict, blocks: dict | None, dense: dict, linears: list[str]) -> None:
    """config.json states what the stored tensors must be: a supported architecture with its sizes
    (architectures.check_config, ModelError), the embedding's shape, and as many blocks as the tensors use."""
    from .architectures import BLOCKS, EMBEDDING, check_config

    layout = check_config(config).layout
    emb = dense.get(EMBEDDING[layout])
    want = (config["vocab_size"], config["hidden_size"])
    if emb is None or tuple(emb.shape) != want:
        raise FormatError(f"{path}: {EMBEDDING[layout]} is {None if emb is None else tuple(emb.shape)}, "
                          f"config.json says {want}")
    n_layer = config["num_hidden_layers"]
    prefix = BLOCKS[layout] + "."
    used = {int(k[len(prefix):].split(".", 1)[0]) for k in [*dense, *linears] if k.startswith(prefix)}
    if max(used, default=-1) >= n_layer or (blocks is not None and blocks["total"] != n_layer):
        raise FormatError(f"{path}: config.json says {n_layer} decoder blocks; the tensors use {len(used)}"
                          + ("" if blocks is None else f" and pbs2p.json counts {blocks['total']}"))


def load_checkpoint(path) -> Checkpoint:
    """Read and validate a checkpoint directory; FormatError (one line) on anything missing or corrupt."""
    path = Path(path)
    if not path.is_dir():
        raise FormatError(f"{path}: not a checkpoint directory")
    meta = _read_json(path / META_JSON)
    if meta.get("format") != CHECKPOINT_KIND:
        raise FormatError(f"{path / META_JSON}: not a pbs2p checkpoint description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FormatError(f"{path}: checkpoint format version {meta.get('format_version')} is not supported "
                          f"(this build reads {FORMAT_VERSION})")
    from ..algo.config import CompressConfig

    try:  # the exporters write its fields into the file's metadata
        CompressConfig.from_dict(meta.get("compress_config"))
    except (Pbs2pError, TypeError, ValueError, AttributeError) as e:
        raise FormatError(f"{path / META_JSON}: bad compress_config ({e})") from None
    config = _read_json(path / CONFIG_JSON)
    arrays = _read_safetensors(path / PACKED)
    dense = _read_dense(path)
    layer_meta = meta.get("layers")
    if not isinstance(layer_meta, dict):
        raise FormatError(f"{path / META_JSON}: no 'layers' table")
    by_layer: dict[str, dict[str, np.ndarray]] = {}
    for key, a in arrays.items():  # "<linear>.<array>"; array names hold no dot
        name, _, arr = key.rpartition(".")
        by_layer.setdefault(name, {})[arr] = a
    layers = packed_layers(str(path), ((n, LayerMeta.from_dict(d)) for n, d in layer_meta.items()), by_layer)
    grids, head = _read_grids(path, meta.get("grid_layers", {}), meta.get("head"))
    overlap = set(grids) & set(layers)
    if overlap:
        raise FormatError(f"{path}: {sorted(overlap)[0]} is stored both packed and on a grid")
    tiers_table = meta.get("tiers")
    if tiers_table is not None and (not isinstance(tiers_table, dict) or set(tiers_table) != set(layers) | set(grids)
                                    or any(tiers_table[n] != "pbs2p" for n in layers)
                                    or any(tiers_table[n] != g.tier for n, g in grids.items())):
        raise FormatError(f"{path / META_JSON}: 'tiers' does not match the stored layers")
    b = meta.get("blocks")
    if b is not None and not (isinstance(b, dict) and set(b) == {"compressed", "total"}
                              and all(type(v) is int for v in b.values()) and 0 <= b["compressed"] <= b["total"]):
        raise FormatError(f"{path / META_JSON}: bad 'blocks' {b!r} (compressed <= total, whole numbers)")
    if meta.get("embed_tier") not in (None, *EMBED_TIERS):
        raise FormatError(f"{path}: unknown embedding tier {meta.get('embed_tier')!r}")
    if not isinstance(meta.get("extra") or {}, dict):
        raise FormatError(f"{path / META_JSON}: 'extra' is not a table")
    tied = meta.get("tied", {})
    if not isinstance(tied, dict):
        raise FormatError(f"{path / META_JSON}: 'tied' is not a table")
    for alias, target in tied.items():
        if target not in dense:
            raise FormatError(f"{path}: tied tensor {alias} points to {target}, which is not stored")
    _check_config(path, config, b, dense, [*layers, *grids])
    if head is not None:
        key, g = head
        if key not in dense or dense[key].ndim != 2 or (g.rows, g.cols) != dense[key].shape:
            raise FormatError(f"{path}: the head's stored form ({g.rows}, {g.cols}) is not a stored matrix {key}")
        if g.tier not in EMBED_TIERS:
            raise FormatError(f"{path}: the head's tier {g.tier!r} is not an embedding tier")
    return Checkpoint(path=path, config=config, meta=meta, layers=layers, grids=grids, dense=dense, tied=dict(tied),
                      head=head)


def _meta(linears: dict[str, tuple[PackedLayer | GridLayer, float]], compress_config: dict, embed_tier: str | None,
          layer_n: dict, tied: dict[str, str], dense_dtypes: dict[str, str], blocks: dict, extra: dict) -> dict:
    """pbs2p.json: what load_checkpoint reads back, with each linear's honest bits and the mean over all of them."""
    layers_json, grid_json = {}, {}
    total_bits = total_weights = 0  # whole numbers: the sum does not depend on the order
    for name, (stored, loss) in linears.items():
        if isinstance(stored, PackedLayer):
            bits = honest_bits(stored)
            total_weights += stored.meta.rows * stored.meta.cols
            layers_json[name] = {**stored.meta.to_dict(), "honest_bits": bits, "loss": float(loss)}
        else:
            bits = stored.honest_bits
            total_weights += stored.rows * stored.cols
            grid_json[name] = {"tier": stored.tier, "rows": stored.rows, "cols": stored.cols, "honest_bits": bits,
                               "loss": float(loss)}
        total_bits += bits
    return {
        "format": CHECKPOINT_KIND,
        "format_version": FORMAT_VERSION,
        "compress_config": compress_config,
        "layers": layers_json,
        "grid_layers": grid_json,
        "tiers": {name: ("pbs2p" if isinstance(stored, PackedLayer) else stored.tier)
                  for name, (stored, _) in linears.items()},
        "embed_tier": embed_tier,
        "layer_n": {str(k): int(v) for k, v in layer_n.items()},
        "tied": tied,
        "dense_dtypes": dense_dtypes,
        "bits_per_weight": total_bits / total_weights if total_weights else None,
        "blocks": blocks,
        "extra": extra,
    }


def write_checkpoint(out_dir, *, write_config: Callable[[Path], None],
                     linears: dict[str, tuple[PackedLayer | GridLayer, float]],
                     dense_shards: list[Callable[[], dict[str, Tensor]]], tied: dict[str, str],
                     dense_dtypes: dict[str, str], compress_config: dict, layer_n: dict, blocks: dict,
                     embed_tier: str | None, extra: dict,
                     write_tokenizer: Callable[[Path], None] | None = None,
                     head: tuple[str, GridLayer] | None = None) -> Path:
    """Write a checkpoint directory atomically (files.atomic_dir: replaces an earlier checkpoint, nothing else).

    write_config(dir) writes config.json; linears: each compressed linear (model order) -> (its stored form, its
    loss; an array of the form may be RowPieces, read as it is written); dense_shards: a function per DENSE shard
    giving its name -> array or RowPieces (one shard in memory at a time, a RowPieces tensor one piece at a time; one
    function writes DENSE, more write dense-K-of-N);
    write_tokenizer(dir): the tokenizer's files, if any; head: the head's matrix (its dense name) in its stored form
    (checkpoint/head.py), its blocks in GRID under that name. Every file is written by write_safetensors, from the arrays'
    own buffers (safetensors' save_file would first copy them all into one bytes object).
    pbs2p.json is written last: its presence marks a complete checkpoint.
    """
    from ..files.atomic_dir import atomic_dir

    def write_file(tensors: dict, path: str, metadata: dict) -> None:
        with open(path, "wb") as f:
            write_safetensors(f, tensors, metadata)

    meta = _meta(linears, compress_config, embed_tier, layer_n, tied, dense_dtypes, blocks, extra)
    if head is not None:
        meta["head"] = {"tensor": head[0], "tier": head[1].tier, "rows": head[1].rows, "cols": head[1].cols}
    meta_text = json.dumps(meta, indent=2, sort_keys=False)  # fails here, before anything is written
    arrays = {f"{name}.{k}": v if isinstance(v, RowPieces) else np.ascontiguousarray(v)
              for name, (stored, _) in linears.items() if isinstance(stored, PackedLayer)
              for k, v in stored.arrays.items()}
    grids = {name: stored.blocks for name, (stored, _) in linears.items() if isinstance(stored, GridLayer)}
    if head is not None:
        grids[head[0]] = head[1].blocks
    # One metadata key per file: safetensors writes its metadata map in a random order, so two keys would make
    # the same checkpoint differ byte for byte from run to run.
    tag = {"format": f"{CHECKPOINT_KIND}/{FORMAT_VERSION}"}
    with atomic_dir(out_dir, is_checkpoint) as tmp:
        write_config(tmp / CONFIG_JSON)
        write_file(arrays, str(tmp / PACKED), metadata=tag)
        for k, shard in enumerate(dense_shards):
            values = shard()
            write_file(values, str(tmp / (DENSE if len(dense_shards) == 1 else dense_shard_name(k, len(dense_shards)))),
                      metadata=tag)
            del values
        write_file(grids, str(tmp / GRID), metadata=tag)
        if write_tokenizer is not None:
            write_tokenizer(tmp)
        (tmp / META_JSON).write_text(meta_text + "\n")
    return Path(out_dir)
