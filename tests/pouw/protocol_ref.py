"""A second implementation of the training step and of evaluation, from docs/protocol.md alone.

Written from the document's §3 (exact arithmetic), §4 (the MLP and the CNN) and §7
(evaluation), without the project's arithmetic: mathematical integers (Python ints in
numpy object arrays), no torch. It serves two purposes:

* it shows that the document specifies the step: its states hash to the document's
  vectors (tests/pouw/test_protocol_doc.py);
* it is instrumented: every clamp and saturation of the document counts how often it
  binds, and each can be replaced by a plausible *wrong reading* (no clamp, or the
  table's last entry instead of the appended 0), so a test can show that a vector hits
  a clamp and that a mistake in it changes the vector's hashes.

Only the step and evaluation are reimplemented; the PRNG, state encoding and
accumulator come from the project (the document's vectors pin those separately).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from fractions import Fraction
from functools import lru_cache
from math import isqrt, prod

import numpy as np

INT32_MAX = 2**31 - 1
PARAM_MAX = 2**30 - 1
U_MAX = 2**30

TRAINING_CLAMPS = (
    "input_128",  # §3.3: an input -128 enters as -127
    "int8_carry",  # §3.3: a rounding carry to 128 becomes 127
    "sat32_product",  # §3.5: rescale_sat32 of the product
    "sat32_sum",  # §3.5: sat32 of the rescaled product plus the bias
    "lut_index",  # §3.6: gaps of 16 or more read the appended entry LUT[1024] = 0
    "update_u",  # §3.8: u clamped to [-2**30, 2**30]
    "momentum",  # §3.8: v' clamped to [-PARAM_MAX, PARAM_MAX]
    "param",  # §3.8: W' clamped to [-PARAM_MAX, PARAM_MAX]
)
EVAL_CLAMPS = ("loss_target",)  # §7: t = max(e_y, 1)

State = dict[str, np.ndarray]


def _ints(values: Iterable[int] | np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.array([int(v) for v in np.asarray(values).reshape(-1)], dtype=object)
    return out.reshape(shape if shape is not None else np.asarray(values).shape)


def round_shift(x: np.ndarray | int, s: int) -> np.ndarray | int:
    """§3.2: floor(x / 2**s + 1/2) for s >= 1, x * 2**-s for s <= 0."""
    if s >= 1:
        return ((x >> (s - 1)) + 1) >> 1
    return x << (-s)


def round_div(n: int, d: int) -> int:
    return (n + d // 2) // d


@lru_cache(maxsize=1)
def lut() -> tuple[int, ...]:
    """§3.6: LUT[k] = round_half_up(2**30 / S_k), S_k the 80-term series of exp(k/64); LUT[1024] = 0."""
    out = []
    for k in range(1024):
        x = Fraction(k, 64)
        term, s = Fraction(1), Fraction(0)
        for n in range(80):
            if n:
                term = term * x / n
            s += term
        v = Fraction(2**30) / s
        out.append((v + Fraction(1, 2)).__floor__())
    return tuple(out) + (0,)


def log2q(n: int) -> int:
    """§7: ((bitlen(n) - 1) << 20) + the 20 fraction bits from repeated squaring."""
    e = n.bit_length() - 1
    y = n >> (e - 30) if e >= 30 else n << (30 - e)
    frac = 0
    for _ in range(20):
        y = (y * y) >> 30
        bit = 1 if y >= 2**31 else 0
        y >>= bit
        frac = (frac << 1) | bit
    return (e << 20) + frac


class Reference:
    """What both families share (§3, §7); ``wrong`` names the clamps read the wrong way
    (see the module docstring). Subclasses give the layout, the step and the logits."""

    def __init__(self, spec: dict, wrong: Iterable[str] = ()) -> None:
        self.spec = spec
        self.wrong = frozenset(wrong)
        unknown = self.wrong - set(TRAINING_CLAMPS) - set(EVAL_CLAMPS)
        if unknown:
            raise ValueError(f"unknown clamps {sorted(unknown)}")
        self.hits: Counter[str] = Counter()
        self.F = spec["weight_frac_bits"]
        self.A = spec["act_frac_bits"]

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        raise NotImplementedError

    # --- clamps -----------------------------------------------------------------------

    def clamp(self, name: str, x: np.ndarray, lo: int | None, hi: int | None) -> np.ndarray:
        """Clamp ``x`` to [lo, hi] (None: unbounded), counting the elements it changes."""
        below = (x < lo) if lo is not None else np.zeros(x.shape, dtype=bool)
        above = (x > hi) if hi is not None else np.zeros(x.shape, dtype=bool)
        self.hits[name] += int(np.count_nonzero(below | above))
        if name in self.wrong:
            return x
        out = x.copy()
        if lo is not None:
            out[below] = lo
        if hi is not None:
            out[above] = hi
        return out

    def sat32(self, name: str, x: np.ndarray) -> np.ndarray:
        return self.clamp(name, x, -INT32_MAX, INT32_MAX)

    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """§3.3 over the whole group x: (q, s) with q = clamp(round_shift(x, s), -127, 127)."""
        m = int(max((abs(v) for v in x.reshape(-1)), default=0))
        s = m.bit_length() - 7
        return self.clamp("int8_carry", round_shift(x, s), -127, 127), s

    # --- initialisation ---------------------------------------------------------------

    def init_state(self, seed: bytes) -> State:
        """§4.0 (drawing with the document's uniform_below, §9): weights uniform in
        [-a, a] with a = isqrt(3 * 2**(2F) // rows), everything else 0."""
        from pouw.prng import derive_key, uniform_below

        state: State = {}
        for name, shape in self.layout():
            if name.startswith("w"):
                a = isqrt(3 * 2 ** (2 * self.F) // shape[0])
                draws = uniform_below(derive_key(seed, b"pouw/init/" + name.encode()), 2 * a + 1, prod(shape))
                state[name] = _ints([d - a for d in draws], shape)
            else:
                state[name] = _ints([0] * prod(shape), shape)
        return state

    # --- pieces of §3 -----------------------------------------------------------------

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        return self.clamp("input_128", _ints(x), -127, 127)

    def _weight(self, state: State, l: int) -> tuple[np.ndarray, int]:
        """§3.5: (Q_w, frac_w) of layer l's weight, quantised per tensor."""
        qw, sw = self.quantize(state[f"w{l}"])
        return qw, self.F - sw

    def _dense(self, a: np.ndarray, fa: int, qw: np.ndarray, fw: int, bias: np.ndarray) -> np.ndarray:
        """§3.5: the pre-activation z."""
        p = a.dot(qw)
        z = self.sat32("sat32_product", round_shift(p, fa + fw - self.A))
        return self.sat32("sat32_sum", z + round_shift(bias, self.F - self.A))

    def _relu_quantized(self, z: np.ndarray) -> tuple[np.ndarray, int]:
        """§3.5: the next layer's input and its frac from a pre-activation."""
        a, s = self.quantize(np.maximum(z, 0))
        return a, self.A - s

    def _exp(self, z: np.ndarray) -> np.ndarray:
        """§3.6: e[b, j] = LUT[min(round_shift(gap, A - 6), 1024)]."""
        gap = z.max(axis=1, keepdims=True) - z
        idx = round_shift(gap, self.A - 6)
        idx = self.clamp("lut_index", idx, None, 1024)
        table = lut()
        if "lut_index" in self.wrong:  # the wrong reading: no appended 0, the last entry instead
            return np.vectorize(lambda i: table[min(i, 1023)], otypes=[object])(idx)
        return np.vectorize(lambda i: table[i], otypes=[object])(idx)

    def _loss_gradient(self, z: np.ndarray, labels: list[int]) -> np.ndarray:
        """§3.6: g = p - onehot(y) << 16 (16 fractional bits)."""
        e = self._exp(z)
        total = e.sum(axis=1, keepdims=True)
        p = ((e << 16) + total // 2) // total
        for b, c in enumerate(labels):
            p[b, c] -= 1 << 16
        return p

    def _update(self, state: State, grads: dict[str, tuple[np.ndarray, int]], batch: int) -> State:
        """§3.8 for every parameter tensor (weights and biases), with its momentum buffer."""
        spec = self.spec
        new: State = {}
        r_b = (2**33 + batch) // (2 * batch)
        for name in [n for n in state if not n.startswith("v")]:
            G, frac_g = grads[name]
            t = frac_g + 32 + spec["lr_shift"] - self.F
            u = self.clamp("update_u", round_shift(G * r_b, t), -U_MAX, U_MAX)
            if spec["momentum_shift"] is None:
                new[name] = self.clamp("param", state[name] - u, -PARAM_MAX, PARAM_MAX)
            else:
                v = state["v" + name]
                v2 = self.clamp("momentum", v - round_shift(v, spec["momentum_shift"]) + u, -PARAM_MAX, PARAM_MAX)
                new[name] = self.clamp("param", state[name] - v2, -PARAM_MAX, PARAM_MAX)
                new["v" + name] = v2
        return {name: new[name] for name in state}

    def _with_momentum(self, layout: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, tuple[int, ...]]]:
        if self.spec["momentum_shift"] is None:
            return layout
        return layout + [("v" + name, shape) for name, shape in layout]

    # --- the family's part ------------------------------------------------------------

    def step(self, state: State, x: np.ndarray, y: Iterable[int]) -> State:
        raise NotImplementedError

    def logits(self, state: State, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # --- evaluation -------------------------------------------------------------------

    def evaluate(self, state: State, x: np.ndarray, y: Iterable[int]) -> dict[str, int]:
        """§7: correct, total, accuracy_ppm, loss_sum_q20, loss_micro, loss_milli."""
        labels = [int(v) for v in y]
        z = self.logits(state, x)
        e = self._exp(z)
        correct = 0
        loss_sum = 0
        for b, c in enumerate(labels):
            row = list(z[b])
            correct += int(row.index(max(row)) == c)
            t = self.clamp("loss_target", _ints([e[b, c]]), 1, None)[0]
            loss_sum += ((log2q(int(e[b].sum())) - log2q(int(t))) * 744261118) >> 30
        n = len(labels)
        return {
            "correct": correct,
            "total": n,
            "accuracy_ppm": round_div(correct * 10**6, n),
            "loss_sum_q20": loss_sum,
            "loss_micro": round_div(loss_sum * 10**6, n << 20),
            "loss_milli": round_div(loss_sum * 10**3, n << 20),
        }


class ReferenceMLP(Reference):
    """§4.1: dense layers with ReLU between them."""

    def __init__(self, spec: dict, wrong: Iterable[str] = ()) -> None:
        super().__init__(spec, wrong)
        self.dims = [prod(spec["input_shape"]), *spec["hidden"], spec["num_classes"]]

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        out: list[tuple[str, tuple[int, ...]]] = []
        for l in range(len(self.dims) - 1):
            out += [(f"w{l}", (self.dims[l], self.dims[l + 1])), (f"b{l}", (self.dims[l + 1],))]
        return self._with_momentum(out)

    def step(self, state: State, x: np.ndarray, y: Iterable[int]) -> State:
        """§3.5 to §3.8 for one batch (x int8 [B, *input_shape], y [B])."""
        labels = [int(v) for v in y]
        L = len(self.dims) - 1
        a, fa = self._inputs(x).reshape(len(labels), -1), self.spec["input_frac_bits"]
        saved = []  # (a, frac_a, Q_w, frac_w, z) per layer
        for l in range(L):
            qw, fw = self._weight(state, l)
            z = self._dense(a, fa, qw, fw, state[f"b{l}"])
            saved.append((a, fa, qw, fw, z))
            if l < L - 1:
                a, fa = self._relu_quantized(z)
        g, fg_in = self._loss_gradient(saved[-1][4], labels), 16
        grads = {}
        for l in range(L - 1, -1, -1):  # §3.7, last layer first
            a, fa, qw, fw, _ = saved[l]
            qg, sg = self.quantize(g)
            fg = fg_in - sg
            grads[f"w{l}"] = (a.T.dot(qg), fa + fg)
            grads[f"b{l}"] = (qg.sum(axis=0), fg)
            if l > 0:
                z_prev = saved[l - 1][4]
                g, fg_in = np.where(z_prev > 0, qg.dot(qw.T), 0).astype(object), fg + fw
        return self._update(state, grads, len(labels))

    def logits(self, state: State, x: np.ndarray) -> np.ndarray:
        """§3.3/§7: per-example activation quantisation (weights per tensor)."""
        weights = [self._weight(state, l) for l in range(len(self.dims) - 1)]
        rows = []
        for xi in self._inputs(x).reshape(x.shape[0], -1):
            a, fa = xi.reshape(1, -1), self.spec["input_frac_bits"]
            for l, (qw, fw) in enumerate(weights):
                z = self._dense(a, fa, qw, fw, state[f"b{l}"])
                if l < len(weights) - 1:
                    a, fa = self._relu_quantized(z)
            rows.append(z[0])
        return np.array(rows, dtype=object)


class ReferenceCNN(Reference):
    """§4.2: conv layers by im2col gathers (channels last), then a dense head."""

    def __init__(self, spec: dict, wrong: Iterable[str] = ()) -> None:
        super().__init__(spec, wrong)
        c, h, w = spec["input_shape"]
        self.k, self.s, self.p = spec["kernel_size"], spec["stride"], spec["kernel_size"] // 2
        self.geo = [(h, w, c)]  # (H, W, C) of the input and of each conv layer's output
        for ch in spec["hidden"]:
            h, w = (h + 2 * self.p - self.k) // self.s + 1, (w + 2 * self.p - self.k) // self.s + 1
            self.geo.append((h, w, ch))

    def layout(self) -> list[tuple[str, tuple[int, ...]]]:
        out: list[tuple[str, tuple[int, ...]]] = []
        for l in range(len(self.spec["hidden"])):
            cin, cout = self.geo[l][2], self.geo[l + 1][2]
            out += [(f"w{l}", (self.k * self.k * cin, cout)), (f"b{l}", (cout,))]
        h, w, c = self.geo[-1]
        n = len(self.spec["hidden"])
        out += [(f"w{n}", (h * w * c, self.spec["num_classes"])), (f"b{n}", (self.spec["num_classes"],))]
        return self._with_momentum(out)

    def _gather_index(self, l: int) -> np.ndarray:
        """idx[o, r] = ((oh*s + ki) * Wp + (ow*s + kj)) * C + ci (§4.2)."""
        h, w, c = self.geo[l]
        ho, wo, _ = self.geo[l + 1]
        wp = w + 2 * self.p
        idx = np.zeros((ho * wo, self.k * self.k * c), dtype=np.int64)
        for oh in range(ho):
            for ow in range(wo):
                for ki in range(self.k):
                    for kj in range(self.k):
                        for ci in range(c):
                            idx[oh * wo + ow, (ki * self.k + kj) * c + ci] = ((oh * self.s + ki) * wp + (ow * self.s + kj)) * c + ci
        return idx

    def _columns(self, a: np.ndarray, l: int) -> np.ndarray:
        """im2col of a [B, H, W, C]: [B * H_out * W_out, k*k*C]."""
        b = a.shape[0]
        padded = np.zeros((b, a.shape[1] + 2 * self.p, a.shape[2] + 2 * self.p, a.shape[3]), dtype=object)
        padded[:, :, :, :] = 0
        padded[:, self.p : self.p + a.shape[1], self.p : self.p + a.shape[2], :] = a
        idx = self._gather_index(l)
        return padded.reshape(b, -1)[:, idx].reshape(b * idx.shape[0], idx.shape[1])

    def _forward(self, state: State, x: np.ndarray, per_example: bool) -> tuple[np.ndarray, list, tuple]:
        """Conv layers then the head; per_example quantises activations one example at a time."""
        b = x.shape[0]
        a = self._inputs(x).transpose(0, 2, 3, 1)  # [B, H, W, C]
        fa: int | list[int] = [self.spec["input_frac_bits"]] * b if per_example else self.spec["input_frac_bits"]
        saved = []
        n = len(self.spec["hidden"])
        for l in range(n):
            ho, wo, cout = self.geo[l + 1]
            cols = self._columns(a, l)
            qw, fw = self._weight(state, l)
            if per_example:
                rows = ho * wo
                z = np.concatenate([self._dense(cols[i * rows : (i + 1) * rows], fa[i], qw, fw, state[f"b{l}"])  # type: ignore[index]
                                    for i in range(b)])
            else:
                z = self._dense(cols, fa, qw, fw, state[f"b{l}"])  # type: ignore[arg-type]
            z = z.reshape(b, ho, wo, cout)
            saved.append((cols, fa, qw, fw, z))
            if per_example:
                pairs = [self._relu_quantized(z[i]) for i in range(b)]
                a, fa = np.stack([q for q, _ in pairs]), [f for _, f in pairs]
            else:
                a, fa = self._relu_quantized(z)
        flat = a.reshape(b, -1)
        qw, fw = self._weight(state, n)
        if per_example:
            logits = np.concatenate([self._dense(flat[i : i + 1], fa[i], qw, fw, state[f"b{n}"]) for i in range(b)])  # type: ignore[index]
        else:
            logits = self._dense(flat, fa, qw, fw, state[f"b{n}"])  # type: ignore[arg-type]
        return logits, saved, (flat, fa, qw, fw)

    def step(self, state: State, x: np.ndarray, y: Iterable[int]) -> State:
        """§3 and §4.2 for one batch (x int8 [B, C, H, W], y [B])."""
        labels = [int(v) for v in y]
        b = len(labels)
        n = len(self.spec["hidden"])
        logits, saved, (flat, fa, qw, fw) = self._forward(state, x, per_example=False)
        qg, sg = self.quantize(self._loss_gradient(logits, labels))
        fg = 16 - sg
        grads = {f"w{n}": (flat.T.dot(qg), fa + fg), f"b{n}": (qg.sum(axis=0), fg)}
        z_last = saved[-1][4]
        g = np.where(z_last > 0, qg.dot(qw.T).reshape(z_last.shape), 0).astype(object)
        fg_in = fg + fw
        for l in range(n - 1, -1, -1):
            cols, fa_l, qw_l, fw_l, z = saved[l]
            h, w, c = self.geo[l]
            qg, sg = self.quantize(g)
            fg = fg_in - sg
            q2 = qg.reshape(-1, z.shape[3])
            grads[f"w{l}"] = (cols.T.dot(q2), fa_l + fg)
            grads[f"b{l}"] = (q2.sum(axis=0), fg)
            if l == 0:
                break
            dcols = q2.dot(qw_l.T).reshape(b, -1, cols.shape[1])  # [B, H_out*W_out, k*k*C]
            idx = self._gather_index(l)
            hp, wp = h + 2 * self.p, w + 2 * self.p
            buffer = np.zeros((b, hp * wp * c), dtype=object)
            buffer[:] = 0
            for i in range(b):  # col2im: every element back to the position its gather read
                for o in range(idx.shape[0]):
                    for r in range(idx.shape[1]):
                        buffer[i, idx[o, r]] += dcols[i, o, r]
            da = buffer.reshape(b, hp, wp, c)[:, self.p : self.p + h, self.p : self.p + w, :]
            g = np.where(saved[l - 1][4] > 0, da, 0).astype(object)
            fg_in = fg + fw_l
        return self._update(state, grads, b)

    def logits(self, state: State, x: np.ndarray) -> np.ndarray:
        return self._forward(state, x, per_example=True)[0]


def reference_for(spec: dict, wrong: Iterable[str] = ()) -> Reference:
    return ReferenceMLP(spec, wrong) if spec["family"] == "mlp" else ReferenceCNN(spec, wrong)


def to_torch_state(state: State) -> dict:
    """The reference state as the project's int32 tensors (for its state encoding and hash)."""
    import torch

    out = {}
    for name, value in state.items():
        out[name] = torch.tensor([int(v) for v in value.reshape(-1)], dtype=torch.int64).reshape(value.shape).to(torch.int32)
    return out


def from_torch_state(state: dict) -> State:
    return {name: _ints(t.to("cpu").numpy()) for name, t in state.items()}


def state_commitment(spec: object, state: State) -> bytes:
    """c = state_hash(encoding) (§5) of a reference state. A state that a wrong reading
    has driven out of the encodable range gets a distinct stand-in hash (any wrong
    implementation would commit to *something* other than the right state's hash)."""
    from pouw.prng import keccak256
    from pouw.state import serialize_state, state_hash

    if any(abs(int(v)) > PARAM_MAX for t in state.values() for v in t.reshape(-1)):
        return keccak256(b"unencodable" + repr({k: [int(v) for v in t.reshape(-1)] for k, t in state.items()}).encode())
    return state_hash(serialize_state(spec, to_torch_state(state)))  # type: ignore[arg-type]


def reference_trajectory(spec: object, dataset: object, init_seed: bytes, seed: bytes, m: int,
                         wrong: Iterable[str] = ()) -> tuple[Reference, list[tuple[int, bytes, bytes, State]]]:
    """The trajectory of §10/§12 (``spec.steps`` steps, segment length m, no budget point)
    with the reference step: ``(ref, [(p_j, c_j, A_j, s_{p_j}) for each point j])``."""
    from pouw.commit import next_accumulator
    from pouw.prng import batch_indices

    spec_dict = spec.to_dict()  # type: ignore[attr-defined]
    ref = reference_for(spec_dict, wrong)
    state = ref.init_state(init_seed)
    x_train = dataset.x_train.numpy()  # type: ignore[attr-defined]
    y_train = dataset.y_train.numpy()  # type: ignore[attr-defined]
    accs = [seed]
    points = []
    steps = spec_dict["steps"]
    for j in range(1, steps // m + 1):
        batch_seed = accs[max(j - 2, 0)]
        for i in range((j - 1) * m + 1, j * m + 1):
            idx = batch_indices(batch_seed, i, spec_dict["batch_size"], len(y_train))
            state = ref.step(state, x_train[idx], y_train[idx])
        c = state_commitment(spec, state)
        accs.append(next_accumulator(accs[-1], c))
        points.append((j * m, c, accs[-1], state))
    return ref, points
