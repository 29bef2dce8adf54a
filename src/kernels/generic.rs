//! One body per kernel family, generic over a [`Vector`] type.
//!
//! Every backend instantiates these functions with its own vector type inside a thin
//! `#[target_feature]` wrapper (generated from the kernel table in `kernels::isa`), so each body exists once and is
//! compiled once per instruction set. `f32` is a one-lane [`Vector`] too: the scalar
//! backend's elementwise kernels and backward matrix kernels are these same bodies.
//!
//! * Elementwise kernels (activations, derivatives, optimiser updates, the exponentials of
//!   softmax) apply a [`Lanes`]-generic formula to whole vectors and then to the tail at
//!   `f32`: the same operations in the same order, so every backend agrees bit for bit.
//! * `dense_backward_input` and `dense_backward_params` add their terms in the scalar
//!   reference order, vectorised across the independent output elements: bit-identical to
//!   the reference on backends without FMA (SSE2, simd128), within
//!   [`matrix_error_bound`](super::matrix_error_bound) where the multiply-adds are fused.
//! * `dense_forward`: on AVX2 and AVX-512, whole blocks of 8 or 16 samples take the samples
//!   as lanes (broadcast multiply-adds in input order, fused: within the same bound); the
//!   other samples, and every sample on the other backends, a dot product per output,
//!   vectorised along the inputs, which reorders the sum (within the same bound).

use super::GradMode;
use crate::elementwise::Elementwise;
use crate::lanes::{Lanes, Pair};

/// A SIMD vector of f32 lanes (or `f32` itself): [`Lanes`] plus memory access and the
/// operations whose rounding is allowed to differ between instruction sets.
pub(crate) trait Vector: Lanes {
    /// Number of f32 lanes.
    const LANES: usize;
    /// 32 vector registers (AVX-512, NEON) rather than 16: room for bigger register blocks.
    const MANY_REGISTERS: bool = false;
    /// Independent dependency chains the kernels keep side by side (1 or 4): the
    /// reduction kernels' accumulators (4 hide the latency of a vector max/min/add chain)
    /// and the vectors the elementwise kernels evaluate interleaved as a
    /// [`Pair`]`<`[`Pair`]`<V>>` (an exponential is a chain of about 30 dependent
    /// operations). Plain `f32` (the microcontroller path) keeps 1, which its in-order
    /// pipeline does not need more of, and which keeps its code small.
    const UNROLL: usize = 4;
    /// The first `LANES` elements of `s` (zeros if `s` is shorter, which no kernel does).
    fn load(s: &[f32]) -> Self;
    /// Writes the lanes to the first `LANES` elements of `s` (nothing if `s` is shorter).
    fn store(self, s: &mut [f32]);
    /// The first `n` elements of `s` (`n` < LANES), zeros in the other lanes; nothing past
    /// `s[n]` is read. Backends with masked loads override this copy through a buffer.
    #[inline(always)]
    fn load_partial(s: &[f32], n: usize) -> Self {
        const { assert!(Self::LANES <= 16, "the lane buffer holds 16 lanes") };
        let mut buffer = [0.0f32; 16];
        for (b, &v) in buffer.iter_mut().zip(s).take(n) {
            *b = v;
        }
        Self::load(&buffer)
    }
    /// Writes the first `n` lanes (`n` < LANES) to `s`; nothing past `s[n]` is written.
    #[inline(always)]
    fn store_partial(self, s: &mut [f32], n: usize) {
        const { assert!(Self::LANES <= 16, "the lane buffer holds 16 lanes") };
        let mut buffer = [0.0f32; 16];
        self.store(&mut buffer);
        for (o, &v) in s.iter_mut().zip(buffer.iter()).take(n) {
            *o = v;
        }
    }
    /// `self · b + c`, with one rounding where the instruction set has FMA. Used only by the
    /// matrix kernels, whose results are specified up to a bound.
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// The sum of the lanes (in an order of the instruction set's choosing).
    fn reduce_sum(self) -> f32;
    /// [`Vector::transpose`] runs in registers (a shuffle network), so the batch-lanes
    /// forward pass, which transposes its inputs and outputs, pays off.
    const REGISTER_TRANSPOSE: bool = false;
    /// Transposes the `LANES × LANES` block `rows` in place: lane `c` of `rows[r]` becomes
    /// lane `r` of `rows[c]`. Nothing happens unless `rows.len() == LANES`. Through memory
    /// unless a backend overrides it.
    #[inline(always)]
    fn transpose(rows: &mut [Self]) {
        const { assert!(Self::LANES <= 16, "the buffer holds 16 × 16 lanes") };
        if rows.len() != Self::LANES || Self::LANES == 1 {
            return;
        }
        let mut buffer = [0.0f32; 256];
        for (r, v) in rows.iter().enumerate() {
            v.store(buffer.get_mut(r * Self::LANES..).unwrap_or(&mut []));
        }
        let mut column = [0.0f32; 16];
        for (c, v) in rows.iter_mut().enumerate() {
            for (r, d) in column.iter_mut().take(Self::LANES).enumerate() {
                *d = buffer.get(r * Self::LANES + c).copied().unwrap_or(0.0);
            }
            *v = Self::load(&column);
        }
    }
    /// `max(self, acc)` where `self > acc`, else `acc` (so a NaN `self` keeps `acc`): the
    /// semantics of x86 `maxps`, which the x86 backends use.
    #[inline(always)]
    fn max_or_keep(self, acc: Self) -> Self {
        Self::select(self.gt(acc), self, acc)
    }
    /// `min(self, acc)` where `self < acc`, else `acc` (so a NaN `self` keeps `acc`): x86
    /// `minps`, which the x86 backends use.
    #[inline(always)]
    fn min_or_keep(self, acc: Self) -> Self {
        Self::select(self.lt(acc), self, acc)
    }
    /// `self` where `mask` and `self < acc`, else `acc` (x86 `minps`, masked on AVX-512).
    #[inline(always)]
    fn min_where(mask: Self::Mask, a: Self, acc: Self) -> Self {
        Self::select(mask, Self::select(a.lt(acc), a, acc), acc)
    }
    /// `acc + 1` in the lanes of `mask` (a masked add on AVX-512).
    #[inline(always)]
    fn count_where(mask: Self::Mask, acc: Self) -> Self {
        acc + Self::select(mask, Self::splat(1.0), Self::splat(0.0))
    }
    /// The four lane sums of four vectors; backends override it with a transposing
    /// reduction that is cheaper than four [`Vector::reduce_sum`]s.
    #[inline(always)]
    fn reduce_sum4(v: [Self; 4]) -> [f32; 4] {
        let [a, b, c, d] = v;
        [
            a.reduce_sum(),
            b.reduce_sum(),
            c.reduce_sum(),
            d.reduce_sum(),
        ]
    }
    /// The lane sums of sixteen vectors, in order: four [`Vector::reduce_sum4`]s unless a
    /// backend has a cheaper transposing tree (AVX-512).
    #[inline(always)]
    fn reduce_sum16(v: [Self; 16]) -> [f32; 16] {
        let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15] = v;
        let [s0, s1, s2, s3] = Self::reduce_sum4([a0, a1, a2, a3]);
        let [s4, s5, s6, s7] = Self::reduce_sum4([a4, a5, a6, a7]);
        let [s8, s9, s10, s11] = Self::reduce_sum4([a8, a9, a10, a11]);
        let [s12, s13, s14, s15] = Self::reduce_sum4([a12, a13, a14, a15]);
        [
            s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15,
        ]
    }
}

impl Vector for f32 {
    const LANES: usize = 1;
    const UNROLL: usize = 1;
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        s.first().copied().unwrap_or(0.0)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        if let Some(d) = s.first_mut() {
            *d = self;
        }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        self * b + c
    }
    #[inline(always)]
    fn reduce_sum(self) -> f32 {
        self
    }
}

/// [`Lanes::map_lanes`] for a vector type: through memory, one lane at a time.
#[inline(always)]
pub(crate) fn map_lanes_in_memory<V: Vector>(v: V, f: impl Fn(f32) -> f32) -> V {
    const { assert!(V::LANES <= 16, "the lane buffer holds 16 lanes") };
    let mut lanes = [0.0f32; 16];
    v.store(&mut lanes);
    for x in lanes.iter_mut().take(V::LANES) {
        *x = f(*x);
    }
    V::load(&lanes)
}

/// An elementwise function of one or more inputs, written once for every [`Lanes`] type.
pub(crate) trait LaneMap {
    /// Number of input slices (1 to 3).
    fn apply<R: Lanes>(&self, inputs: [R; 3]) -> R;
}

/// `f(z)` of an activation.
pub(crate) struct Value<'a, A>(pub &'a A);
impl<A: Elementwise> LaneMap for Value<'_, A> {
    #[inline(always)]
    fn apply<R: Lanes>(&self, [z, _, _]: [R; 3]) -> R {
        self.0.value_lanes(z)
    }
}

/// `f'(z)` of an activation.
pub(crate) struct Derivative<'a, A>(pub &'a A);
impl<A: Elementwise> LaneMap for Derivative<'_, A> {
    #[inline(always)]
    fn apply<R: Lanes>(&self, [z, _, _]: [R; 3]) -> R {
        self.0.derivative_lanes(z)
    }
}

/// `dy · f'(z)`: the backward pass through an activation.
pub(crate) struct Backward<'a, A>(pub &'a A);
impl<A: Elementwise> LaneMap for Backward<'_, A> {
    #[inline(always)]
    fn apply<R: Lanes>(&self, [z, dy, _]: [R; 3]) -> R {
        dy * self.0.derivative_lanes(z)
    }
}

/// `e^(z − m)`: the exponentials of a max-shifted softmax row.
pub(crate) struct ExpShifted(pub f32);
impl LaneMap for ExpShifted {
    #[inline(always)]
    fn apply<R: Lanes>(&self, [z, _, _]: [R; 3]) -> R {
        crate::math::exp_lanes(z - R::splat(self.0))
    }
}

/// The first `n` elements of `s` (all of it if shorter).
#[inline(always)]
fn head(s: &[f32], n: usize) -> &[f32] {
    s.get(..n).unwrap_or(s)
}

/// The first `n` elements of `s`, mutably.
#[inline(always)]
fn head_mut(s: &mut [f32], n: usize) -> &mut [f32] {
    let n = n.min(s.len());
    s.split_at_mut(n).0
}

/// `s[k..]`, empty if `k` is past the end.
#[inline(always)]
fn lane(s: &[f32], k: usize) -> &[f32] {
    s.get(k..).unwrap_or(&[])
}

/// `out[k] = f(z[k])` and `d[k] = f'(z[k])` in one pass over the common length, through
/// [`Elementwise::value_and_derivative_lanes`].
#[inline(always)]
pub(crate) fn value_and_derivative<V: Vector, A: Elementwise>(
    activation: &A,
    z: &[f32],
    out: &mut [f32],
    d: &mut [f32],
) {
    let n = z.len().min(out.len()).min(d.len());
    let (z, out, d) = (head(z, n), head_mut(out, n), head_mut(d, n));
    let (z4, z) = z.split_at(interleaved_len::<V>(n));
    let (out4, out) = out.split_at_mut(z4.len());
    let (d4, d) = d.split_at_mut(z4.len());
    let groups = out4
        .chunks_exact_mut(4 * V::LANES)
        .zip(d4.chunks_exact_mut(4 * V::LANES))
        .zip(z4.chunks_exact(4 * V::LANES));
    for ((o, dk), zk) in groups {
        let (v, dv) = activation.value_and_derivative_lanes(load_four::<V>(zk));
        store_four(v, o);
        store_four(dv, dk);
    }
    let mut outs = out.chunks_exact_mut(V::LANES);
    let mut ds = d.chunks_exact_mut(V::LANES);
    let mut zs = z.chunks_exact(V::LANES);
    for ((o, dk), zk) in (&mut outs).zip(&mut ds).zip(&mut zs) {
        let (v, dv) = activation.value_and_derivative_lanes(V::load(zk));
        v.store(o);
        dv.store(dk);
    }
    let (o, dk, zk) = (outs.into_remainder(), ds.into_remainder(), zs.remainder());
    if !zk.is_empty() {
        // The tail as one partial vector (the same operations per lane, so the same bits
        // as at f32, and one evaluation instead of up to LANES − 1).
        let (v, dv) = activation.value_and_derivative_lanes(V::load_partial(zk, zk.len()));
        v.store_partial(o, zk.len());
        dv.store_partial(dk, zk.len());
    }
}

/// The first elements of a length-`n` slice that the elementwise kernels evaluate four
/// vectors at a time (whole groups of four; none on the one-lane path).
#[inline(always)]
fn interleaved_len<V: Vector>(n: usize) -> usize {
    if V::UNROLL == 4 {
        n - n % (4 * V::LANES)
    } else {
        0
    }
}

/// The four vectors of a [`load_four`] group, in memory order.
#[inline(always)]
fn four_of<V: Vector>(v: Pair<Pair<V>>) -> [V; 4] {
    [v.0 .0, v.0 .1, v.1 .0, v.1 .1]
}

/// Four consecutive vectors of `s` (zeros past its end) as one [`Pair`] of pairs, whose
/// formulas then run interleaved (see [`Pair`]).
#[inline(always)]
fn load_four<V: Vector>(s: &[f32]) -> Pair<Pair<V>> {
    let l = V::LANES;
    Pair(
        Pair(V::load(lane(s, 0)), V::load(lane(s, l))),
        Pair(V::load(lane(s, 2 * l)), V::load(lane(s, 3 * l))),
    )
}

/// Writes [`load_four`]'s four vectors back (nothing past the end of `s`).
#[inline(always)]
fn store_four<V: Vector>(v: Pair<Pair<V>>, s: &mut [f32]) {
    let l = V::LANES;
    for (k, part) in four_of(v).into_iter().enumerate() {
        if let Some(out) = s.get_mut(k * l..) {
            part.store(out);
        }
    }
}

/// `out[k] = f(a[k], b[k], c[k])` over the common length; unused inputs may be empty.
#[inline(always)]
pub(crate) fn map<V: Vector, F: LaneMap>(f: &F, a: &[f32], b: &[f32], c: &[f32], out: &mut [f32]) {
    let n = out.len().min(a.len());
    let (a, out) = (head(a, n), head_mut(out, n));
    let (out4, out) = out.split_at_mut(interleaved_len::<V>(n));
    let mut k = 0;
    for o in out4.chunks_exact_mut(4 * V::LANES) {
        let inputs = [
            load_four::<V>(lane(a, k)),
            load_four::<V>(lane(b, k)),
            load_four::<V>(lane(c, k)),
        ];
        store_four(f.apply(inputs), o);
        k += 4 * V::LANES;
    }
    let mut chunks = out.chunks_exact_mut(V::LANES);
    for o in &mut chunks {
        let inputs = [
            V::load(lane(a, k)),
            V::load(lane(b, k)),
            V::load(lane(c, k)),
        ];
        f.apply(inputs).store(o);
        k += V::LANES;
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    if n > 0 {
        // The tail as one partial vector (zeros past each input's end, as `load` gives for
        // a short input): the same operations per lane, so the same bits as at f32, and
        // one evaluation instead of up to LANES − 1 (a softmax row of 10 classes on
        // AVX-512 is all tail).
        let partial = |s: &[f32]| {
            let s = lane(s, k);
            V::load_partial(s, n.min(s.len()))
        };
        f.apply([partial(a), partial(b), partial(c)])
            .store_partial(rest, n);
    }
}

/// SGD with weight decay on any [`Lanes`] type: `w − lr · (g + λ·w)`.
#[inline(always)]
pub(crate) fn sgd_step<R: Lanes>(w: R, g: R, lr: f32, weight_decay: f32) -> R {
    let step = g + R::splat(weight_decay) * w;
    w - R::splat(lr) * step
}

/// Momentum on any [`Lanes`] type: returns `(w − lr·v', v')` with `v' = μ·v + (g + λ·w)`.
#[inline(always)]
pub(crate) fn momentum_step<R: Lanes>(w: R, g: R, v: R, lr: f32, mu: f32, wd: f32) -> (R, R) {
    let step = g + R::splat(wd) * w;
    let v = R::splat(mu) * v + step;
    (w - R::splat(lr) * v, v)
}

/// The constants of one Adam step (see `kernels::adam_update`).
#[derive(Clone, Copy)]
pub(crate) struct AdamStep {
    pub beta1: f32,
    pub beta2: f32,
    pub weight_decay: f32,
    pub lr_t: f32,
    pub eps_t: f32,
}

impl AdamStep {
    /// The bias corrections folded into the learning rate and ε (see
    /// `kernels::adam_update`).
    #[inline(always)]
    pub(crate) fn new(
        lr: f32,
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        weight_decay: f32,
        bias1: f32,
        bias2: f32,
    ) -> Self {
        let root_bias2 = libm::sqrtf(bias2);
        AdamStep {
            beta1,
            beta2,
            weight_decay,
            lr_t: (lr * root_bias2 / bias1).min(f32::MAX),
            eps_t: epsilon * root_bias2,
        }
    }
}

/// Adam on any [`Lanes`] type: returns `(w', m', v')`.
///
/// Saturating where IEEE would overflow, so finite inputs give finite outputs: the
/// decayed gradient and its square are clamped to ±`f32::MAX` (m and v, convex
/// combinations of values within ±MAX, then stay within it), and so is the new weight.
/// The denominator is at least ε_t > 0 (the optimiser keeps ε_t normal), so no 0/0. Where
/// nothing overflows the clamps are identities.
#[inline(always)]
pub(crate) fn adam_step<R: Lanes>(w: R, g: R, m: R, v: R, c: &AdamStep) -> (R, R, R) {
    let grad = (g + R::splat(c.weight_decay) * w).clamp(-f32::MAX, f32::MAX);
    let m = R::splat(c.beta1) * m + R::splat(1.0 - c.beta1) * grad;
    let square = (grad * grad).clamp(0.0, f32::MAX);
    let v = R::splat(c.beta2) * v + R::splat(1.0 - c.beta2) * square;
    let w = w - R::splat(c.lr_t) * m / (v.sqrt() + R::splat(c.eps_t));
    (w.clamp(-f32::MAX, f32::MAX), m, v)
}

/// `w −= lr · (g + λ·w)` over the common length.
#[inline(always)]
pub(crate) fn sgd_update<V: Vector>(w: &mut [f32], g: &[f32], lr: f32, weight_decay: f32) {
    let n = w.len().min(g.len());
    let (w, g) = (head_mut(w, n), head(g, n));
    let mut ws = w.chunks_exact_mut(V::LANES);
    let mut gs = g.chunks_exact(V::LANES);
    for (wc, gc) in (&mut ws).zip(&mut gs) {
        sgd_step(V::load(wc), V::load(gc), lr, weight_decay).store(wc);
    }
    for (wk, &gk) in ws.into_remainder().iter_mut().zip(gs.remainder()) {
        *wk = sgd_step(*wk, gk, lr, weight_decay);
    }
}

/// SGD with momentum over the common length.
#[inline(always)]
pub(crate) fn sgd_momentum_update<V: Vector>(
    w: &mut [f32],
    g: &[f32],
    velocity: &mut [f32],
    lr: f32,
    mu: f32,
    wd: f32,
) {
    let n = w.len().min(g.len()).min(velocity.len());
    let (w, g, velocity) = (head_mut(w, n), head(g, n), head_mut(velocity, n));
    let mut ws = w.chunks_exact_mut(V::LANES);
    let mut gs = g.chunks_exact(V::LANES);
    let mut vs = velocity.chunks_exact_mut(V::LANES);
    for ((wc, gc), vc) in (&mut ws).zip(&mut gs).zip(&mut vs) {
        let (w1, v1) = momentum_step(V::load(wc), V::load(gc), V::load(vc), lr, mu, wd);
        w1.store(wc);
        v1.store(vc);
    }
    let tail = ws.into_remainder().iter_mut().zip(gs.remainder());
    for ((wk, &gk), vk) in tail.zip(vs.into_remainder().iter_mut()) {
        (*wk, *vk) = momentum_step(*wk, gk, *vk, lr, mu, wd);
    }
}

/// One Adam step over the common length.
#[inline(always)]
pub(crate) fn adam_update<V: Vector>(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    c: &AdamStep,
) {
    let n = w.len().min(g.len()).min(m.len()).min(v.len());
    let (w, g, m, v) = (head_mut(w, n), head(g, n), head_mut(m, n), head_mut(v, n));
    let mut ws = w.chunks_exact_mut(V::LANES);
    let mut gs = g.chunks_exact(V::LANES);
    let mut ms = m.chunks_exact_mut(V::LANES);
    let mut vs = v.chunks_exact_mut(V::LANES);
    for (((wc, gc), mc), vc) in (&mut ws).zip(&mut gs).zip(&mut ms).zip(&mut vs) {
        let (w1, m1, v1) = adam_step(V::load(wc), V::load(gc), V::load(mc), V::load(vc), c);
        w1.store(wc);
        m1.store(mc);
        v1.store(vc);
    }
    let tail = ws.into_remainder().iter_mut().zip(gs.remainder());
    let tail = tail.zip(ms.into_remainder().iter_mut());
    for (((wk, &gk), mk), vk) in tail.zip(vs.into_remainder().iter_mut()) {
        (*wk, *mk, *vk) = adam_step(*wk, gk, *mk, *vk, c);
    }
}

/// `out[r] = init[r] + Σ_k coefficient(r, k) · rows[k]` for every output row r, adding the
/// terms for k = 0, 1, … in the scalar reference order with [`Vector::mul_add`] (fused on
/// FMA backends, a rounded product and a rounded sum otherwise), vectorised across the IN
/// columns, four output rows at a time so that each loaded vector of `rows` serves four
/// rows. `init` is +0.0 (`accumulate == false`) or `out`. The last IN mod LANES columns are
/// never fused.
///
/// * dX: out = dx (rows: samples), k = unit o, coefficient dz[s][o], rows = W.
/// * dW: out = dW (rows: units), k = sample s, coefficient dz[s][o], rows = X.
#[inline(always)]
fn accumulate_rows<V: Vector, const IN: usize, const R: usize, const K: usize>(
    out: &mut [[f32; IN]; R],
    rows: &[[f32; IN]; K],
    coefficient: impl Fn(usize, usize) -> f32,
    accumulate: bool,
) {
    let (blocks, rest) = out.as_chunks_mut::<4>();
    let mut r0 = 0;
    for [a, b, c, d] in blocks {
        accumulate_block::<V, IN, K, 4>([a, b, c, d], r0, rows, &coefficient, accumulate);
        r0 += 4;
    }
    for row in rest {
        accumulate_block::<V, IN, K, 1>([row], r0, rows, &coefficient, accumulate);
        r0 += 1;
    }
}

/// `accumulate_rows` for `N` output rows starting at row `r0`: two vectors per row at a
/// time, then one, then the scalar tail (the same arithmetic at f32).
#[inline(always)]
fn accumulate_block<V: Vector, const IN: usize, const K: usize, const N: usize>(
    mut out: [&mut [f32; IN]; N],
    r0: usize,
    rows: &[[f32; IN]; K],
    coefficient: &impl Fn(usize, usize) -> f32,
    accumulate: bool,
) {
    let init = |o: &[f32]| {
        if accumulate {
            V::load(o)
        } else {
            V::splat(0.0)
        }
    };
    let step = 2 * V::LANES;
    let mut i = 0;
    while i + step <= IN {
        let mut acc = [[V::splat(0.0); 2]; N];
        for (a, o) in acc.iter_mut().zip(out.iter()) {
            let o = o.get(i..).unwrap_or(&[]);
            *a = [init(o), init(o.get(V::LANES..).unwrap_or(&[]))];
        }
        for (k, row) in rows.iter().enumerate() {
            let row = row.get(i..).unwrap_or(&[]);
            let x = [V::load(row), V::load(row.get(V::LANES..).unwrap_or(&[]))];
            for (n, a) in acc.iter_mut().enumerate() {
                let g = V::splat(coefficient(r0 + n, k));
                a[0] = g.mul_add(x[0], a[0]);
                a[1] = g.mul_add(x[1], a[1]);
            }
        }
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            let o = o.get_mut(i..).unwrap_or(&mut []);
            a[0].store(o);
            a[1].store(o.get_mut(V::LANES..).unwrap_or(&mut []));
        }
        i += step;
    }
    while i + V::LANES <= IN {
        let mut acc = [V::splat(0.0); N];
        for (a, o) in acc.iter_mut().zip(out.iter()) {
            *a = init(o.get(i..).unwrap_or(&[]));
        }
        for (k, row) in rows.iter().enumerate() {
            let x = V::load(row.get(i..).unwrap_or(&[]));
            for (n, a) in acc.iter_mut().enumerate() {
                *a = V::splat(coefficient(r0 + n, k)).mul_add(x, *a);
            }
        }
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            a.store(o.get_mut(i..).unwrap_or(&mut []));
        }
        i += V::LANES;
    }
    if i < IN {
        // The last IN % LANES columns: the same loop at one lane.
        for (n, o) in out.iter_mut().enumerate() {
            for (c, d) in o.iter_mut().enumerate().skip(i) {
                let mut a = if accumulate { *d } else { 0.0 };
                for (k, row) in rows.iter().enumerate() {
                    a += coefficient(r0 + n, k) * row.get(c).copied().unwrap_or(0.0);
                }
                *d = a;
            }
        }
    }
}

/// Dense backward to the input, `dx[s] = Σ_o dz[s][o]·w[o]` (overwrites), in the reference
/// order: bit-identical to `scalar::dense_backward_input`.
#[inline(always)]
pub(crate) fn dense_backward_input<V: Vector, const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    dz: &[[f32; OUT]; B],
    dx: &mut [[f32; IN]; B],
) {
    let coefficient = |s: usize, o: usize| dz.get(s).and_then(|r| r.get(o)).copied().unwrap_or(0.0);
    accumulate_rows::<V, IN, B, OUT>(dx, w, coefficient, false);
}

/// Dense backward to the parameters, `dw[o] (+)= Σ_s dz[s][o]·x[s]`, `db (+)= Σ_s dz[s]`, in
/// the reference order: bit-identical to `scalar::dense_backward_params`.
#[inline(always)]
pub(crate) fn dense_backward_params<
    V: Vector,
    const IN: usize,
    const OUT: usize,
    const B: usize,
>(
    dz: &[[f32; OUT]; B],
    x: &[[f32; IN]; B],
    dw: &mut [[f32; IN]; OUT],
    db: &mut [f32; OUT],
    mode: GradMode,
) {
    let accumulate = mode == GradMode::Accumulate;
    let coefficient = |o: usize, s: usize| dz.get(s).and_then(|r| r.get(o)).copied().unwrap_or(0.0);
    accumulate_rows::<V, IN, OUT, B>(dw, x, coefficient, accumulate);
    // db is one row of OUT columns whose terms are the rows of dz, each with coefficient 1.
    let db = core::array::from_mut(db);
    accumulate_rows::<V, OUT, 1, B>(db, dz, |_, _| 1.0, accumulate);
}

/// Dense forward for a batch, `z[s][o] = Σ_i w[o][i]·x[s][i] + b[o]`.
///
/// Where the backend transposes in registers ([`Vector::REGISTER_TRANSPOSE`]), whole blocks
/// of samples take the batch-lanes kernel ([`lanes_forward`]: broadcast multiply-adds, no
/// reductions); the samples left over, and every sample on the other backends, take the
/// dot-product kernel ([`dot_forward`]).
#[inline(always)]
pub(crate) fn dense_forward<V: Vector, const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]; B],
    z: &mut [[f32; OUT]; B],
) {
    // The register block of the batch-lanes kernel: LANES units × LANES samples, 16
    // accumulators on AVX-512 and 8 on AVX2. (Four-lane vectors keep the dot products: on
    // SSE2, without FMA, the batch-lanes kernel was half as fast.)
    let (samples, units) = match (V::REGISTER_TRANSPOSE, V::LANES) {
        (true, 16) => lanes_forward_sized::<V, IN, OUT, 16>(w, b, x, z),
        (true, 8) => lanes_forward_sized::<V, IN, OUT, 8>(w, b, x, z),
        _ => (0, 0),
    };
    let (x_lanes, x_rest) = x.split_at(samples.min(B));
    let (z_lanes, z_rest) = z.split_at_mut(samples.min(B));
    dot_forward::<V, IN, OUT>(w, b, units, x_lanes, z_lanes);
    dot_forward::<V, IN, OUT>(w, b, 0, x_rest, z_rest);
}

/// Inputs per packed chunk of the batch-lanes forward: 256 inputs × 16 samples = 16 KiB of
/// transposed inputs, which stay in L1 while every block of units passes over them.
const PACKED_INPUTS: usize = 256;

/// [`lanes_forward`] with a transpose buffer of 64, 128 or [`PACKED_INPUTS`] inputs, the
/// smallest that holds IN (safe Rust zeroes the buffer at every call: 0.8 % of a
/// 64-128-128-10 training step with 16 KiB for every layer).
#[inline(always)]
fn lanes_forward_sized<V: Vector, const IN: usize, const OUT: usize, const L: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]],
    z: &mut [[f32; OUT]],
) -> (usize, usize) {
    if IN <= 64 {
        lanes_forward::<V, IN, OUT, L, 64>(w, b, x, z)
    } else if IN <= 128 {
        lanes_forward::<V, IN, OUT, L, 128>(w, b, x, z)
    } else {
        lanes_forward::<V, IN, OUT, L, PACKED_INPUTS>(w, b, x, z)
    }
}

/// The batch-lanes forward over the whole blocks of `L` samples and the whole blocks of `L`
/// units (`L` = the vector's lanes), and the last, partial block of units where it holds at
/// least three quarters of `L`; returns how many samples and units it wrote, the rest is
/// [`dot_forward`]'s.
///
/// Per block of samples and chunk of at most `P` ≤ [`PACKED_INPUTS`] inputs (chunks of
/// equal length), the inputs are transposed into a buffer (`xt[i]` = input `i` of every
/// sample of the block: the samples become the lanes); then for each block of `L` units,
/// `L` accumulators take one broadcast weight times the vector `xt[i]` per input and unit,
/// in input order (fused where the instruction set has FMA), and are transposed back into
/// `z` (where the next chunk reloads them, or the bias is added after the last). Units past
/// OUT in the last block repeat the last row and are not stored. Per output this is the
/// reference order (+0.0, then `i = 0, 1, …`, then the bias) up to fusion: within
/// `matrix_error_bound`.
#[inline(always)]
fn lanes_forward<V: Vector, const IN: usize, const OUT: usize, const L: usize, const P: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]],
    z: &mut [[f32; OUT]],
) -> (usize, usize) {
    // (Every arm of `dense_forward`'s match is instantiated for every vector type; only
    // the one for this vector's lane count runs.)
    if L != V::LANES || L > 16 || L == 1 || IN == 0 {
        return (0, 0);
    }
    let samples = x.len().min(z.len()) / L * L;
    let units = if 4 * (OUT % L) >= 3 * L {
        OUT
    } else {
        OUT - OUT % L
    };
    if samples == 0 || units == 0 {
        return (0, 0);
    }
    let chunks = IN.div_ceil(P);
    let chunk = IN.div_ceil(chunks);
    let mut xt = [[0.0f32; 16]; P];
    for (xs, zs) in x.chunks_exact(L).zip(z.chunks_exact_mut(L)) {
        let mut c0 = 0;
        while c0 < IN {
            let kc = (IN - c0).min(chunk);
            let xt = xt.get_mut(..kc).unwrap_or(&mut []);
            pack_transposed::<V, IN>(xs, c0, xt);
            let (first, last) = (c0 == 0, c0 + kc == IN);
            let mut o0 = 0;
            while o0 < units {
                let n = (units - o0).min(L);
                let rows: [&[f32]; L] = core::array::from_fn(|u| {
                    let row = w.get((o0 + u).min(OUT - 1)).map_or(&[][..], |r| &r[..]);
                    row.get(c0..c0 + kc).unwrap_or(&[])
                });
                let bias = if last { b.get(o0..o0 + n) } else { None };
                units_tile::<V, OUT, L>(rows, bias, xt, zs, o0, n, first);
                o0 += L;
            }
            c0 += kc;
        }
    }
    (samples, units)
}

/// `xt[t][s] = xs[s][c0 + t]` for the `LANES` samples of `xs` and `xt.len()` inputs:
/// `LANES × LANES` blocks through [`Vector::transpose`], the last inputs one at a time.
#[inline(always)]
fn pack_transposed<V: Vector, const IN: usize>(xs: &[[f32; IN]], c0: usize, xt: &mut [[f32; 16]]) {
    let kc = xt.len();
    let lanes = V::LANES;
    let mut t = 0;
    while t + lanes <= kc {
        let mut block = [V::splat(0.0); 16];
        for (r, row) in block.iter_mut().zip(xs) {
            *r = V::load(row.get(c0 + t..).unwrap_or(&[]));
        }
        let block = block.get_mut(..lanes).unwrap_or(&mut []);
        V::transpose(block);
        for (r, out) in block.iter().zip(xt.iter_mut().skip(t)) {
            r.store(out);
        }
        t += lanes;
    }
    for (t, out) in xt.iter_mut().enumerate().skip(t) {
        for (o, row) in out.iter_mut().zip(xs) {
            *o = row.get(c0 + t).copied().unwrap_or(0.0);
        }
    }
}

/// One block of `L` = LANES units (`rows`: their weights over this chunk) for the `L`
/// samples of `z`, whose outputs `o0..o0 + units` it writes; `first`: start at +0.0 (else
/// continue from `z`); `bias`: add it (the last chunk).
#[inline(always)]
fn units_tile<V: Vector, const OUT: usize, const L: usize>(
    rows: [&[f32]; L],
    bias: Option<&[f32]>,
    xt: &[[f32; 16]],
    z: &mut [[f32; OUT]],
    o0: usize,
    units: usize,
    first: bool,
) {
    let mut acc = [V::splat(0.0); L];
    if !first {
        // Reload the partial sums: rows of z (sample-major), transposed back into one
        // vector per unit.
        for (a, zr) in acc.iter_mut().zip(z.iter()) {
            let zr = zr.get(o0..).unwrap_or(&[]);
            *a = if units == L {
                V::load(zr)
            } else {
                V::load_partial(zr, units)
            };
        }
        V::transpose(&mut acc);
    }
    for (t, xr) in xt.iter().enumerate() {
        let xv = V::load(xr);
        for (a, row) in acc.iter_mut().zip(rows.iter()) {
            *a = V::splat(row.get(t).copied().unwrap_or(0.0)).mul_add(xv, *a);
        }
    }
    if let Some(bias) = bias {
        for (a, &bias) in acc.iter_mut().zip(bias) {
            *a = *a + V::splat(bias);
        }
    }
    V::transpose(&mut acc);
    for (r, zr) in acc.iter().zip(z.iter_mut()) {
        let zr = zr.get_mut(o0..).unwrap_or(&mut []);
        if units == L {
            r.store(zr);
        } else {
            r.store_partial(zr, units);
        }
    }
}

/// The dot-product forward: eight units at a time (outer loop, so their 8 rows of W stay
/// in L1 while every sample passes), one sample per pass, or two on backends with 32
/// registers (inner loop): eight independent vectors of partial sums along the inputs per
/// sample (fused multiply-add where available) hide the FMA latency and are reduced
/// together ([`Vector::reduce_sum16`] for two samples, [`Vector::reduce_sum4`] otherwise),
/// then the scalar tail of the inputs and the bias are added. The units left over (OUT mod
/// 8) take one vector each. Writes the units from `from` on.
#[inline(always)]
fn dot_forward<V: Vector, const IN: usize, const OUT: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    from: usize,
    x: &[[f32; IN]],
    z: &mut [[f32; OUT]],
) {
    if x.is_empty() {
        return;
    }
    let full = IN - IN % V::LANES;
    let mut o = from;
    let (w, b) = (w.get(from..).unwrap_or(&[]), b.get(from..).unwrap_or(&[]));
    for (ws, bs) in w.as_chunks::<8>().0.iter().zip(b.as_chunks::<8>().0) {
        let pairs = if V::MANY_REGISTERS {
            x.len().min(z.len()) / 2
        } else {
            0
        };
        let (x2, x1) = x.split_at(2 * pairs);
        let (z2, z1) = z.split_at_mut(2 * pairs);
        // With 32 registers, two samples per pass: 16 accumulators, and each loaded row
        // vector of W serves both (the pass is then FMA-bound instead of load-bound).
        for ([x0, x1], [z0, z1]) in x2.as_chunks::<2>().0.iter().zip(z2.as_chunks_mut::<2>().0) {
            units8::<V, IN, OUT, 2>([x0, x1], ws, bs, [z0, z1], o, full);
        }
        for (xs, zs) in x1.iter().zip(z1.iter_mut()) {
            units8::<V, IN, OUT, 1>([xs], ws, bs, [zs], o, full);
        }
        o += 8;
    }
    for (wo, &bias) in w.iter().zip(b.iter()).skip(o - from) {
        for (xs, zs) in x.iter().zip(z.iter_mut()) {
            let mut acc = V::splat(0.0);
            let mut i = 0;
            while i < full {
                acc = V::load(lane(wo, i)).mul_add(V::load(lane(xs, i)), acc);
                i += V::LANES;
            }
            if let Some(out) = zs.get_mut(o) {
                *out = acc.reduce_sum() + tail_dot(wo, xs, full) + bias;
            }
        }
        o += 1;
    }
}

/// Eight units (rows `ws`, biases `bs`, outputs `o..o + 8`) for `S` samples.
#[inline(always)]
fn units8<V: Vector, const IN: usize, const OUT: usize, const S: usize>(
    x: [&[f32; IN]; S],
    ws: &[[f32; IN]; 8],
    bs: &[f32; 8],
    z: [&mut [f32; OUT]; S],
    o: usize,
    full: usize,
) {
    let mut acc = [[V::splat(0.0); 8]; S];
    let mut i = 0;
    while i < full {
        let mut xv = [V::splat(0.0); S];
        for (v, xs) in xv.iter_mut().zip(x.iter()) {
            *v = V::load(lane(*xs, i));
        }
        // One row vector of W live at a time (loaded, used by every sample, dropped): with
        // all eight loaded first, 16 accumulators + 8 + S vectors spilled an accumulator
        // on AVX-512 (a 64-byte store and reload per iteration in the hot loop).
        for (u, row) in ws.iter().enumerate() {
            let w = V::load(lane(row, i));
            for (a, &xs) in acc.iter_mut().zip(xv.iter()) {
                if let Some(au) = a.get_mut(u) {
                    *au = w.mul_add(xs, *au);
                }
            }
        }
        i += V::LANES;
    }
    // A register-allocation barrier between the hot loop and the reductions. Without it
    // LLVM kept the accumulators' live ranges through the reduction code and spilled one or
    // two of them inside the hot loop on AVX-512 (a 64-byte store and reload per iteration,
    // seen in the disassembly): 784×128 at batch 32 took 113 µs instead of 60 µs. The
    // barrier costs one store and reload of the accumulators per block, so it is used only
    // where two samples share a pass (16 accumulators) and the loop is long (≥ 16
    // iterations): at 64 inputs it made the kernel 10 % slower, and on SSE2 and AVX2 (one
    // sample, 8 accumulators, nothing spilled) 5–15 %. `black_box` changes no value.
    let acc = if S == 2 && full / V::LANES >= 16 {
        core::hint::black_box(acc)
    } else {
        acc
    };
    // The 8·S lane sums, sample-major.
    let mut sums = [[0.0f32; 8]; S];
    if let [[a0, a1, a2, a3, a4, a5, a6, a7], [b0, b1, b2, b3, b4, b5, b6, b7]] = acc.as_slice() {
        // Two samples: one sixteen-way reduction (a transposing tree on AVX-512).
        let all = V::reduce_sum16([
            *a0, *a1, *a2, *a3, *a4, *a5, *a6, *a7, *b0, *b1, *b2, *b3, *b4, *b5, *b6, *b7,
        ]);
        for (row, chunk) in sums.iter_mut().zip(all.as_chunks::<8>().0) {
            *row = *chunk;
        }
    } else {
        for (row, a) in sums.iter_mut().zip(acc.iter()) {
            let [a0, a1, a2, a3, a4, a5, a6, a7] = *a;
            let [s0, s1, s2, s3] = V::reduce_sum4([a0, a1, a2, a3]);
            let [s4, s5, s6, s7] = V::reduce_sum4([a4, a5, a6, a7]);
            *row = [s0, s1, s2, s3, s4, s5, s6, s7];
        }
    }
    for ((row, xs), zs) in sums.iter().zip(x).zip(z) {
        let out = zs.iter_mut().skip(o);
        for (((&sum, w), &bias), out) in row.iter().zip(ws.iter()).zip(bs.iter()).zip(out) {
            *out = sum + tail_dot(w, xs, full) + bias;
        }
    }
}

/// Σ_{i ≥ from} w[i]·x[i], in index order (the inputs after the last full vector).
#[inline(always)]
fn tail_dot(w: &[f32], x: &[f32], from: usize) -> f32 {
    let mut t = 0.0;
    for (&wi, &xi) in lane(w, from).iter().zip(lane(x, from)) {
        t += wi * xi;
    }
    t
}

/// Largest and smallest lane of a vector.
#[inline(always)]
fn lane_extremes<V: Vector>(max: V, min: V) -> (f32, f32) {
    const { assert!(V::LANES <= 16, "the lane buffers hold 16 lanes") };
    if V::LANES == 1 {
        // One lane: no buffers (the microcontroller path keeps its stack small).
        let (mut hi, mut lo) = ([0.0f32; 1], [0.0f32; 1]);
        max.store(&mut hi);
        min.store(&mut lo);
        return (hi[0], lo[0]);
    }
    let (mut hi, mut lo) = ([0.0f32; 16], [f32::INFINITY; 16]);
    max.store(&mut hi);
    min.store(&mut lo);
    let hi = hi
        .iter()
        .take(V::LANES)
        .fold(0.0f32, |m, &v| if v > m { v } else { m });
    let lo = lo
        .iter()
        .take(V::LANES)
        .fold(f32::INFINITY, |m, &v| if v < m { v } else { m });
    (hi, lo)
}

/// The largest |v| (NaN ignored, ∞ included) and the smallest nonzero |v| of `values`, in
/// four independent chains: abs, max, a compare and a masked min per vector.
#[inline(always)]
pub(crate) fn extremes<V: Vector>(values: &[f32]) -> (f32, f32) {
    if V::UNROLL == 1 {
        // One lane: integer tests on the bits (see `moments_one_lane`), NaN ignored.
        let (mut max_bits, mut min_less_one) = (0u32, u32::MAX);
        for &v in values {
            let bits = v.to_bits() & 0x7fff_ffff;
            if bits <= 0x7f80_0000 {
                max_bits = max_bits.max(bits);
                min_less_one = min_less_one.min(bits.wrapping_sub(1));
            }
        }
        let min = smallest_nonzero(min_less_one);
        return (f32::from_bits(max_bits), min);
    }
    let mut lanes = [(V::splat(0.0), V::splat(f32::INFINITY)); 4];
    let mut quads = values.chunks_exact(V::UNROLL * V::LANES);
    for c in &mut quads {
        for (j, (max, min)) in lanes.iter_mut().enumerate().take(V::UNROLL) {
            let a = V::load(lane(c, j * V::LANES)).abs();
            *max = a.max_or_keep(*max);
            *min = V::min_where(a.gt(V::splat(0.0)), a, *min);
        }
    }
    let [(mut max, mut min), rest @ ..] = lanes;
    for (m, n) in rest {
        max = m.max_or_keep(max);
        min = V::min_where(n.lt(min), n, min);
    }
    let mut chunks = quads.remainder().chunks_exact(V::LANES);
    for c in &mut chunks {
        let a = V::load(c).abs();
        max = a.max_or_keep(max);
        min = V::min_where(a.gt(V::splat(0.0)), a, min);
    }
    let (mut hi, mut lo) = lane_extremes(max, min);
    for &v in chunks.remainder() {
        let a = v.abs();
        if a > hi {
            hi = a;
        }
        if a > 0.0 && a < lo {
            lo = a;
        }
    }
    (hi, lo)
}

/// The first pass of a tensor's statistics: counts and extremes of |v|, exact on every
/// backend (counting and comparing do not round). Meaningful for finite values only: a NaN
/// is counted as a zero (and on vector backends possibly as tiny) and an ∞ becomes
/// `max_abs`, so callers check for non-finite values (the scaled sums of the second pass
/// turn non-finite; with `max_abs` 0 and zeros, every value is a zero or a NaN) and then
/// take the exact slow path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Magnitudes {
    /// Values with |v| = 0 (or NaN, see above).
    pub zero: u64,
    /// Values with |v| < 2^-126: zeros and subnormals.
    pub tiny: u64,
    /// Largest |v| (0 if none).
    pub max_abs: f32,
    /// Smallest nonzero |v| (+∞ if none).
    pub min_nonzero_abs: f32,
}

impl Magnitudes {
    /// Nothing seen yet.
    pub const EMPTY: Self = Magnitudes {
        zero: 0,
        tiny: 0,
        max_abs: 0.0,
        min_nonzero_abs: f32::INFINITY,
    };

    /// Adds the counts and extremes of `other`.
    #[inline(always)]
    pub(crate) fn merge(&mut self, other: &Self) {
        self.zero = self.zero.saturating_add(other.zero);
        self.tiny = self.tiny.saturating_add(other.tiny);
        if other.max_abs > self.max_abs {
            self.max_abs = other.max_abs;
        }
        if other.min_nonzero_abs < self.min_nonzero_abs {
            self.min_nonzero_abs = other.min_nonzero_abs;
        }
    }
}

/// Per-lane accumulators of [`Magnitudes`]: counts are f32 lanes, exact below 2^24, turned
/// into integers by [`MagnitudeLanes::finish`] before they can reach it. Tiny values are not
/// counted: they are the zeros unless the smallest nonzero magnitude is subnormal, and only
/// then does the caller count them, with [`count_tiny`] (two operations per vector less).
#[derive(Clone, Copy)]
struct MagnitudeLanes<R> {
    /// Values with |v| > 0 (a NaN is not).
    nonzero: R,
    max: R,
    min: R,
}

impl<R: Vector> MagnitudeLanes<R> {
    #[inline(always)]
    fn new() -> Self {
        let zero = R::splat(0.0);
        MagnitudeLanes {
            nonzero: zero,
            max: zero,
            min: R::splat(f32::INFINITY),
        }
    }

    /// Five operations per vector on AVX-512: abs, max, a compare, a masked min and a
    /// masked add.
    #[inline(always)]
    fn add(&mut self, v: R) {
        let a = v.abs();
        self.max = a.max_or_keep(self.max);
        let nonzero = a.gt(R::splat(0.0));
        self.min = R::min_where(nonzero, a, self.min);
        self.nonzero = R::count_where(nonzero, self.nonzero);
    }

    /// The four chains of a reduction as one.
    #[inline(always)]
    fn merged(chains: [Self; 4]) -> Self {
        let [mut l0, l1, l2, l3] = chains;
        l0.merge(&l1);
        l0.merge(&l2);
        l0.merge(&l3);
        l0
    }

    #[inline(always)]
    fn merge(&mut self, other: &Self) {
        self.nonzero = self.nonzero + other.nonzero;
        self.max = other.max.max_or_keep(self.max);
        self.min = R::min_where(other.min.lt(self.min), other.min, self.min);
    }

    /// The lanes reduced, for `count` values added: counts summed exactly (each lane and
    /// the lane total stay below 2^24 by the callers' blocking), extremes by comparison.
    /// `tiny` is set to the zeros (NaN included): right unless `min_nonzero_abs` is
    /// subnormal (then the caller counts them) or a NaN was seen (then the sums are NaN
    /// and callers count exactly).
    #[inline(always)]
    fn finish(self, count: usize) -> Magnitudes {
        let (max_abs, min_nonzero_abs) = lane_extremes(self.max, self.min);
        let nonzero = self.nonzero.reduce_sum() as u64;
        let zero = (count as u64).saturating_sub(nonzero);
        Magnitudes {
            zero,
            tiny: zero,
            max_abs,
            min_nonzero_abs,
        }
    }
}

/// Values with |v| < 2^-126 (zeros and subnormals; NaN is not), by a test on the bits: the
/// second look the statistics take only when some nonzero magnitude is subnormal. (Inlined:
/// on a Cortex-M a call here cost stack and the float compare instructions.)
#[inline(always)]
fn count_tiny(values: &[f32]) -> u64 {
    let tiny = values
        .iter()
        .filter(|v| v.to_bits() & 0x7fff_ffff < 0x0080_0000);
    tiny.count() as u64
}

/// `m` with its tiny values counted over `values` if some are subnormal (see
/// [`MagnitudeLanes`]).
#[inline(always)]
fn with_tiny(mut m: Magnitudes, values: &[f32]) -> Magnitudes {
    if m.min_nonzero_abs < f32::MIN_POSITIVE {
        m.tiny = count_tiny(values);
    }
    m
}

/// `(Σ s, Σ s²)` with s = |v|·`inverse_scale`, for slices whose values are all finite (a
/// non-finite value makes the sums non-finite, which is how callers detect it): four
/// independent partial sums per lane, fused square-adds where the instruction set has FMA.
#[inline(always)]
pub(crate) fn scaled_sums_finite<V: Vector>(values: &[f32], inverse_scale: f32) -> (f32, f32) {
    if V::UNROLL == 1 {
        // One lane, one chain: a Cortex-M's compiler keeps four chains in memory, not in
        // registers (16 instructions per value instead of 8).
        let (mut sum_abs, mut sum_squares) = (0.0f32, 0.0f32);
        for &v in values {
            let s = v.abs() * inverse_scale;
            sum_abs += s;
            sum_squares = Vector::mul_add(s, s, sum_squares);
        }
        return (sum_abs, sum_squares);
    }
    let mut abs = [V::splat(0.0); 4];
    let mut squares = [V::splat(0.0); 4];
    let rest = add_scaled_vectors(values, V::splat(inverse_scale), &mut abs, &mut squares);
    let [a0, a1, a2, a3] = abs;
    let [q0, q1, q2, q3] = squares;
    let (mut sum_abs, mut sum_squares) = (
        ((a0 + a1) + (a2 + a3)).reduce_sum(),
        ((q0 + q1) + (q2 + q3)).reduce_sum(),
    );
    for &v in rest {
        let s = v.abs() * inverse_scale;
        sum_abs += s;
        sum_squares += s * s;
    }
    (sum_abs, sum_squares)
}

/// Adds s = |v|·`k` and s² (fused where the instruction set has FMA) over the whole vectors
/// of `values` to four independent partial sums per lane (blocks of four vectors, then
/// single vectors into the first); returns the values past the last whole vector.
#[inline(always)]
fn add_scaled_vectors<'a, V: Vector>(
    values: &'a [f32],
    k: V,
    abs: &mut [V; 4],
    squares: &mut [V; 4],
) -> &'a [f32] {
    let mut quads = values.chunks_exact(4 * V::LANES);
    for c in &mut quads {
        for (j, (a, q)) in abs.iter_mut().zip(squares.iter_mut()).enumerate() {
            let s = V::load(lane(c, j * V::LANES)).abs() * k;
            *a = *a + s;
            *q = s.mul_add(s, *q);
        }
    }
    let mut chunks = quads.remainder().chunks_exact(V::LANES);
    for c in &mut chunks {
        let s = V::load(c).abs() * k;
        abs[0] = abs[0] + s;
        squares[0] = s.mul_add(s, squares[0]);
    }
    chunks.remainder()
}

/// Calls `f` on every value in order, two per iteration: one loop counter per pair (in
/// [`norm_one_lane`], half an instruction per value of 11 on a Cortex-M4F).
#[inline(always)]
fn for_each_pair(values: &[f32], mut f: impl FnMut(f32)) {
    let (pairs, rest) = values.as_chunks::<2>();
    for &[a, b] in pairs {
        f(a);
        f(b);
    }
    for &v in rest {
        f(v);
    }
}

/// The smallest nonzero magnitude from the one-lane bodies' running minimum of `bits − 1`
/// (which wraps zero to `u32::MAX`, so zeros never win): +∞ if nothing nonzero was seen.
#[inline(always)]
fn smallest_nonzero(min_less_one: u32) -> f32 {
    if min_less_one == u32::MAX {
        f32::INFINITY
    } else {
        f32::from_bits(min_less_one.wrapping_add(1))
    }
}

/// [`moments`] in a single pass at the fixed scale 2^`scale_exponent`, which the caller
/// took from an a-priori bound (for dW: B·max|dz|·max|x|; for W: its norm at the previous
/// step). The caller checks that the maximum found lies in (2^(E−60), 2^E) — below, small
/// terms' squares could underflow; above, the sums could overflow — and otherwise runs
/// [`moments`]. Without `SCALED` the sums are of |v| itself (scale 2^0, one multiply less
/// per vector), which the caller checks by the sums (see `health::sums_fit`). One
/// lane: [`moments`] itself (already one pass; the caller never asks it unscaled).
#[inline(always)]
pub(crate) fn moments_at_scale<V: Vector, const SCALED: bool>(
    values: &[f32],
    scale_exponent: i32,
) -> Moments {
    if V::UNROLL == 1 {
        return moments_one_lane(values, scale_exponent);
    }
    let k = V::splat(crate::lanes::pow2_wide(-scale_exponent));
    let inverse = crate::lanes::pow2_wide(-scale_exponent);
    let scaled = |a: V| if SCALED { a * k } else { a };
    let mut total = Magnitudes::EMPTY;
    let (mut abs, mut squares) = ([V::splat(0.0); 4], [V::splat(0.0); 4]);
    let (mut tail_abs, mut tail_squares) = (0.0f32, 0.0f32);
    // Blocks keep every f32 lane count exact (< 2^24).
    for block in values.chunks(V::LANES << 20) {
        let mut lanes = [MagnitudeLanes::<V>::new(); 4];
        let mut quads = block.chunks_exact(4 * V::LANES);
        for c in &mut quads {
            let all = lanes.iter_mut().zip(abs.iter_mut()).zip(squares.iter_mut());
            for (j, ((l, a), q)) in all.enumerate() {
                let v = V::load(lane(c, j * V::LANES));
                l.add(v);
                let s = scaled(v.abs());
                *a = *a + s;
                *q = s.mul_add(s, *q);
            }
        }
        let mut l0 = MagnitudeLanes::merged(lanes);
        let mut chunks = quads.remainder().chunks_exact(V::LANES);
        for c in &mut chunks {
            let v = V::load(c);
            l0.add(v);
            let s = scaled(v.abs());
            abs[0] = abs[0] + s;
            squares[0] = s.mul_add(s, squares[0]);
        }
        let tail = chunks.remainder();
        let mut rest = MagnitudeLanes::<f32>::new();
        for &v in tail {
            rest.add(v);
            let s = if SCALED { v.abs() * inverse } else { v.abs() };
            tail_abs += s;
            tail_squares += s * s;
        }
        let mut m = l0.finish(block.len() - tail.len());
        m.merge(&rest.finish(tail.len()));
        total.merge(&with_tiny(m, block));
    }
    let [a0, a1, a2, a3] = abs;
    let [q0, q1, q2, q3] = squares;
    Moments {
        magnitudes: total,
        scale_exponent: if SCALED { scale_exponent } else { 0 },
        sum_abs: ((a0 + a1) + (a2 + a3)).reduce_sum() + tail_abs,
        sum_squares: ((q0 + q1) + (q2 + q3)).reduce_sum() + tail_squares,
    }
}

/// The statistics ‖W‖ needs on the vector backends: Σ s² with s = |v|·2^-`scale_exponent`
/// (unscaled, s = v, without `SCALED`) and, with `SMALLEST`, the smallest nonzero |v| (else
/// 0); no counts, no maximum, no Σ s. The caller checks the sum (see
/// `health::sums_fit`). Four chains: a fused square-add per vector, plus abs and a min for
/// the smallest magnitude.
#[inline(always)]
pub(crate) fn norm_lanes<V: Vector, const SCALED: bool, const SMALLEST: bool>(
    values: &[f32],
    scale_exponent: i32,
) -> Moments {
    let k = V::splat(crate::lanes::pow2_wide(-scale_exponent));
    let inverse = crate::lanes::pow2_wide(-scale_exponent);
    let mut squares = [V::splat(0.0); 4];
    let mut min = [V::splat(f32::INFINITY); 4];
    let add = |v: V, q: &mut V, m: &mut V| {
        let s = if SCALED { v * k } else { v };
        *q = s.mul_add(s, *q);
        if SMALLEST {
            // Zeros included (weights are rarely exactly 0): one operation fewer than a
            // masked minimum; if the minimum is 0 the smallest nonzero |v| is found again.
            *m = v.abs().min_or_keep(*m);
        }
    };
    let mut quads = values.chunks_exact(4 * V::LANES);
    for c in &mut quads {
        for (j, (q, m)) in squares.iter_mut().zip(min.iter_mut()).enumerate() {
            add(V::load(lane(c, j * V::LANES)), q, m);
        }
    }
    let [mut q0, q1, q2, q3] = squares;
    let [mut m0, m1, m2, m3] = min;
    let mut chunks = quads.remainder().chunks_exact(V::LANES);
    for c in &mut chunks {
        add(V::load(c), &mut q0, &mut m0);
    }
    for m in [m1, m2, m3] {
        m0 = m.min_or_keep(m0);
    }
    let (_, mut smallest) = lane_extremes(V::splat(0.0), m0);
    if SMALLEST && smallest <= 0.0 {
        let (_, nonzero) = extremes::<V>(values);
        smallest = nonzero;
    }
    let mut tail_squares = 0.0f32;
    for &v in chunks.remainder() {
        let s = if SCALED { v * inverse } else { v };
        tail_squares += s * s;
        let a = v.abs();
        if a > 0.0 && a < smallest {
            smallest = a;
        }
    }
    Moments {
        magnitudes: Magnitudes {
            zero: 0,
            tiny: 0,
            max_abs: 0.0,
            min_nonzero_abs: if SMALLEST { smallest } else { 0.0 },
        },
        scale_exponent: if SCALED { scale_exponent } else { 0 },
        sum_abs: 0.0,
        sum_squares: ((q0 + q1) + (q2 + q3)).reduce_sum() + tail_squares,
    }
}

/// [`moments`] on the one-lane path (scalar backend, microcontrollers), in one pass: the
/// counts and extremes by integer tests on the bits (non-negative floats order like their
/// bit patterns; a Cortex-M does these in a few instructions where float selects need
/// branches), and the scale raised, with the sums rescaled exactly, whenever a new maximum
/// needs it — which is also the only time the maximum changes, so the check is free. The
/// same counts and extremes as the vector bodies; the sums agree within their rounding.
#[inline(always)]
fn moments_one_lane(values: &[f32], scale_exponent: i32) -> Moments {
    const INFINITY_BITS: u32 = 0x7f80_0000;
    let mut e = scale_exponent;
    let mut inverse = crate::lanes::pow2_wide(-e);
    // The minimum is kept as bits − 1, which wraps zero to u32::MAX so that it never wins.
    let (mut max_bits, mut min_less_one) = (0u32, u32::MAX);
    let (mut zero, mut tiny) = (0u64, 0u64);
    let (mut sum_abs, mut sum_squares) = (0.0f32, 0.0f32);
    // A NaN (bits above ∞'s) wins the maximum and makes the sums NaN; ∞ makes them ∞:
    // either way the caller sees non-finite sums and counts exactly, so the loop needs no
    // NaN test. Counts are u32 within chunks (a 32-bit target's slice is one chunk). Tiny
    // values are zeros and subnormals; subnormals exist only if the smallest nonzero
    // magnitude is one, so they are counted (in a second loop) only then.
    for chunk in values.chunks(1 << 31) {
        let mut nonzero = 0u32;
        for &v in chunk {
            let bits = v.to_bits() & 0x7fff_ffff;
            if bits > max_bits {
                max_bits = bits;
                let needed = crate::lanes::exponent_bound(f32::from_bits(bits));
                if needed > e {
                    let shift = e - needed;
                    sum_abs = crate::lanes::scale_by_pow2(sum_abs, shift);
                    sum_squares = crate::lanes::scale_by_pow2(sum_squares, 2 * shift);
                    e = needed;
                    inverse = crate::lanes::pow2_wide(-e);
                }
            }
            min_less_one = min_less_one.min(bits.wrapping_sub(1));
            nonzero += u32::from(bits != 0);
            let s = f32::from_bits(bits) * inverse;
            sum_abs += s;
            sum_squares = Vector::mul_add(s, s, sum_squares);
        }
        let zeros = chunk.len() as u64 - u64::from(nonzero);
        zero += zeros;
        tiny += if min_less_one < 0x007f_ffff {
            count_tiny(chunk)
        } else {
            zeros
        };
    }
    let non_finite = max_bits >= INFINITY_BITS;
    Moments {
        magnitudes: Magnitudes {
            zero,
            tiny,
            max_abs: f32::from_bits(max_bits),
            min_nonzero_abs: smallest_nonzero(min_less_one),
        },
        scale_exponent: e,
        sum_abs,
        sum_squares: if non_finite {
            f32::INFINITY
        } else {
            sum_squares
        },
    }
}

/// [`moments_at_scale`] without counts and Σ|v| on one lane: Σ s² at the fixed scale,
/// which the caller checks (a NaN or an overflow makes it non-finite), and if `smallest`
/// the smallest nonzero magnitude by an integer test on the bits (as [`moments_one_lane`];
/// else 0). No maximum and no rescaling in the loop: on a Cortex-M4F 10.5 instructions per
/// value with the smallest magnitude, 5 without (18 for [`moments_one_lane`]).
#[inline(always)]
pub(crate) fn norm_one_lane(values: &[f32], scale_exponent: i32, smallest: bool) -> Moments {
    let inverse = crate::lanes::pow2_wide(-scale_exponent);
    let mut min_less_one = u32::MAX;
    let mut sum_squares = 0.0f32;
    if smallest {
        for_each_pair(values, |v| {
            let bits = v.to_bits() & 0x7fff_ffff;
            min_less_one = min_less_one.min(bits.wrapping_sub(1));
            let s = f32::from_bits(bits) * inverse;
            sum_squares = Vector::mul_add(s, s, sum_squares);
        });
    } else {
        for &v in values {
            let s = v * inverse;
            sum_squares = Vector::mul_add(s, s, sum_squares);
        }
    }
    Moments {
        magnitudes: Magnitudes {
            zero: 0,
            tiny: 0,
            max_abs: 0.0,
            min_nonzero_abs: if smallest {
                smallest_nonzero(min_less_one)
            } else {
                0.0
            },
        },
        scale_exponent,
        sum_abs: 0.0,
        sum_squares,
    }
}

/// What the observed backward pass through an elementwise activation saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackwardTally {
    /// First-pass statistics of dz.
    pub magnitudes: Magnitudes,
    /// Units whose derivative was exactly 0 for every sample (counted only for activations
    /// that can die).
    pub dead: u64,
    /// Units whose derivative was below the threshold for every sample (counted only for
    /// activations that saturate).
    pub saturated: u64,
    /// Nonzero if some derivative was zero or subnormal although f' is never zero (only for
    /// such activations): f' itself underflowed. (Not a count of them.)
    pub derivative_tiny: u64,
    /// (Σ|dz|, Σ dz²) at the scale 2^0, summed per lane in the same pass on vector
    /// backends (the caller checks them, and sums again at a scale if they do not fit);
    /// NaN on one lane (which never fits: two floats, not an `Option`, keep the tally, which
    /// a microcontroller returns on its stack, 8 bytes smaller).
    pub unscaled_sums: [f32; 2],
}

/// `dz = dy ⊙ f'(z)` over a `[rows][units]` block (flattened), bit-identical to
/// [`map`] with the backward formula, that also tallies what health needs. The units are
/// taken in column blocks of four vectors, each walked row by row (the four vectors of a
/// row are contiguous, and the per-unit "every sample" conditions live in vector registers,
/// never in arrays); then single vectors; then the last `units mod LANES` units as one
/// partial vector (masked loads and stores where the instruction set has them), whose
/// padding lanes are masked out of every count.
#[inline(always)]
pub(crate) fn activation_backward_observed<V: Vector, A: Elementwise>(
    activation: &A,
    z: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    units: usize,
    saturation_threshold: f32,
) -> BackwardTally {
    let n = z.len().min(dy.len()).min(dz.len());
    let rows = n.checked_div(units).unwrap_or(0);
    let mut tally = BackwardTally {
        magnitudes: Magnitudes::EMPTY,
        dead: 0,
        saturated: 0,
        derivative_tiny: 0,
        unscaled_sums: [f32::NAN; 2],
    };
    // Set by a column block that kept only the extremes of |dz| and found a zero.
    let mut recount = false;
    if rows == 0 {
        return tally;
    }
    if V::UNROLL == 1 {
        if matches!(A::FORMULA, crate::elementwise::Formula::Relu) {
            relu_backward_one_lane(activation, z, dy, dz, units, rows, &mut tally);
        } else {
            backward_one_lane(
                activation,
                z,
                dy,
                dz,
                units,
                rows,
                saturation_threshold,
                &mut tally,
            );
        }
        return tally;
    }
    let mut block = BackwardBlock {
        z,
        dy,
        dz,
        units,
        rows,
        threshold: saturation_threshold,
    };
    let full = units - units % V::LANES;
    tally.unscaled_sums = [0.0; 2];
    let mut c = 0;
    let t = &mut tally;
    while c + 4 * V::LANES <= full {
        recount |= column_block::<V, A, 4>(activation, &mut block, c, V::LANES, t);
        c += 4 * V::LANES;
    }
    while c < full {
        recount |= column_block::<V, A, 1>(activation, &mut block, c, V::LANES, t);
        c += V::LANES;
    }
    if c < units {
        recount |= column_block::<V, A, 1>(activation, &mut block, c, units - c, t);
    }
    let written = block.dz.get(..rows * units).unwrap_or(&[]);
    if recount {
        tally.magnitudes = magnitudes::<V>(written);
    }
    tally.magnitudes = with_tiny(tally.magnitudes, written);
    tally
}

/// [`backward_one_lane`] for ReLU, with the same results: dz by the plain backward kernel
/// (on a Cortex-M its VFP compare-and-select loop), then one pass of integer tests on dz's
/// bits for the counts and extremes, and the dead units (every z ≤ 0, so f' = 0 for every
/// sample) by a column scan that stops at a unit's first z that is not ≤ 0. ReLU neither
/// saturates nor has a never-zero derivative, so those counts stay 0.
#[inline(always)]
pub(super) fn relu_backward_one_lane<A: Elementwise>(
    activation: &A,
    z: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    units: usize,
    rows: usize,
    tally: &mut BackwardTally,
) {
    let n = rows * units;
    let (z, dy) = (head(z, n), head(dy, n));
    let dz = head_mut(dz, n);
    let done = super::relu_backward_blocks(z, dy, dz);
    let rest = dz.get_mut(done..).unwrap_or(&mut []);
    let (z_rest, dy_rest) = (z.get(done..).unwrap_or(&[]), dy.get(done..).unwrap_or(&[]));
    map::<f32, _>(&Backward(activation), z_rest, dy_rest, &[], rest);
    let mut bits = BitTally::EMPTY;
    for &p in dz.iter() {
        bits.add(p);
    }
    for u in 0..units {
        let column = z.iter().skip(u).step_by(units.max(1));
        tally.dead += u64::from(column.into_iter().all(|&v| v <= 0.0));
    }
    tally.magnitudes = bits.finish(dz);
}

/// Counts and extremes of |v| by integer tests on the bits, value by value: the one-lane
/// observed backward's statistics of dz (NaN counts as a zero and is left out of the
/// extremes, as in the vector bodies).
#[derive(Clone, Copy)]
struct BitTally {
    max_bits: u32,
    /// The smallest nonzero magnitude's bits − 1 (zero wraps to u32::MAX, so it never wins).
    min_less_one: u32,
    // usize counters: they count elements of a slice, so they cannot wrap, and on a 32-bit
    // microcontroller they take one register and one instruction each (u64: two of each).
    nonzero: usize,
    nan: usize,
}

impl BitTally {
    const EMPTY: Self = BitTally {
        max_bits: 0,
        min_less_one: u32::MAX,
        nonzero: 0,
        nan: 0,
    };

    #[inline(always)]
    fn add(&mut self, v: f32) {
        let bits = v.to_bits() & 0x7fff_ffff;
        if bits <= 0x7f80_0000 {
            self.max_bits = self.max_bits.max(bits);
            self.min_less_one = self.min_less_one.min(bits.wrapping_sub(1));
            self.nonzero += usize::from(bits != 0);
        } else {
            self.nan += 1;
        }
    }

    /// The magnitudes of `written`, the values added. Tiny values are true zeros (NaN
    /// counts as a zero, not as tiny) and subnormals, which exist only if the smallest
    /// nonzero magnitude is one (then they are counted again).
    #[inline(always)]
    fn finish(self, written: &[f32]) -> Magnitudes {
        let zero = written.len() - self.nonzero;
        let tiny = if self.min_less_one < 0x007f_ffff {
            count_tiny(written)
        } else {
            (zero - self.nan) as u64
        };
        Magnitudes {
            zero: zero as u64,
            tiny,
            max_abs: f32::from_bits(self.max_bits),
            min_nonzero_abs: smallest_nonzero(self.min_less_one),
        }
    }
}

/// [`activation_backward_observed`] on the one-lane path (scalar backend,
/// microcontrollers): unit by unit down the rows, the per-unit conditions in two booleans,
/// the statistics by integer tests on the bits (see `moments_one_lane`; NaN counts as a
/// zero and is left out of the extremes, as in the vector bodies).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn backward_one_lane<A: Elementwise>(
    activation: &A,
    z: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    units: usize,
    rows: usize,
    threshold: f32,
    tally: &mut BackwardTally,
) {
    let (can_die, saturates) = (activation.can_die(), activation.saturates());
    let never_zero = activation.derivative_never_zero();
    let mut bits = BitTally::EMPTY;
    let mut derivative_tiny = 0usize; // (usize: see `BitTally`)
    for u in 0..units {
        let (mut all_zero, mut all_below) = (true, true);
        let mut k = u;
        for _ in 0..rows {
            let at = |s: &[f32]| s.get(k).copied().unwrap_or(0.0);
            let d = activation.derivative(at(z));
            let p = at(dy) * d;
            if let Some(out) = dz.get_mut(k) {
                *out = p;
            }
            bits.add(p);
            all_zero &= d.abs() <= 0.0;
            all_below &= d < threshold;
            if never_zero {
                derivative_tiny += usize::from(d.abs() < f32::MIN_POSITIVE);
            }
            k += units;
        }
        tally.dead += u64::from(can_die && all_zero);
        tally.saturated += u64::from(saturates && all_below);
    }
    tally.derivative_tiny += derivative_tiny as u64;
    tally.magnitudes = bits.finish(dz.get(..rows * units).unwrap_or(&[]));
}

/// The operands of [`activation_backward_observed`]: `[rows][units]` blocks, flattened.
struct BackwardBlock<'a> {
    z: &'a [f32],
    dy: &'a [f32],
    dz: &'a mut [f32],
    units: usize,
    rows: usize,
    threshold: f32,
}

/// `W` vectors of columns starting at `c`, over every row (see
/// [`activation_backward_observed`]); with `valid` < LANES (then `W` = 1) a partial vector
/// whose padding lanes (zero dy, so dz = 0 there) are masked out of the counts. Each lane
/// count is at most `rows` < 2^24.
///
/// Units that cannot die (f' is not 0 on a half-line) rarely give an exact zero dz: for
/// them full vectors keep only the maximum and the minimum of |dz| (zeros included, three
/// operations per vector fewer), and if that minimum is 0 the block returns true and the
/// caller counts dz's zeros and smallest magnitude again, with [`magnitudes`].
#[inline(always)]
fn column_block<R: Vector, A: Elementwise, const W: usize>(
    activation: &A,
    block: &mut BackwardBlock<'_>,
    c: usize,
    valid: usize,
    tally: &mut BackwardTally,
) -> bool {
    let BackwardBlock {
        z,
        dy,
        ref mut dz,
        units,
        rows,
        threshold,
    } = *block;
    let (zero, one) = (R::splat(0.0), R::splat(1.0));
    let (can_die, saturates) = (activation.can_die(), activation.saturates());
    let never_zero = activation.derivative_never_zero();
    let partial = valid < R::LANES;
    let extremes_only = !can_die && !partial;
    let infinity = R::splat(f32::INFINITY);
    let mut lanes = MagnitudeLanes::<R>::new();
    let mut smallest = infinity;
    let (mut sum_abs, mut sum_squares) = (zero, zero);
    let (mut all_zero, mut all_below) = ([one; W], [one; W]);
    let mut smallest_derivative = infinity;
    // A row's four vectors of f' evaluated interleaved (see `Pair`), as the plain kernels
    // do: the same bits.
    const { assert!(W <= 4, "a column block is at most four vectors wide") };
    let interleaved = W == 4 && R::UNROLL == 4 && !partial;
    let mut k = c;
    for _ in 0..rows {
        let four = if interleaved {
            four_of(activation.derivative_lanes(load_four::<R>(lane(z, k))))
        } else {
            [zero; 4]
        };
        let units_of_row = all_zero.iter_mut().zip(all_below.iter_mut()).zip(four);
        for (j, ((zero_j, below_j), ahead)) in units_of_row.enumerate() {
            let at = k + j * R::LANES;
            let (d, p) = if partial {
                let d = activation.derivative_lanes(R::load_partial(lane(z, at), valid));
                let p = R::load_partial(lane(dy, at), valid) * d;
                p.store_partial(dz.get_mut(at..).unwrap_or(&mut []), valid);
                (d, p)
            } else {
                let d = if interleaved {
                    ahead
                } else {
                    activation.derivative_lanes(R::load(lane(z, at)))
                };
                let p = R::load(lane(dy, at)) * d;
                p.store(dz.get_mut(at..).unwrap_or(&mut []));
                (d, p)
            };
            if extremes_only {
                let a = p.abs();
                lanes.max = a.max_or_keep(lanes.max);
                smallest = a.min_or_keep(smallest);
            } else {
                lanes.add(p);
            }
            sum_abs = sum_abs + p.abs();
            sum_squares = p.mul_add(p, sum_squares);
            if can_die {
                *zero_j = R::select(d.abs().le(zero), *zero_j, zero);
            }
            if saturates {
                *below_j = R::select(d.lt(R::splat(threshold)), *below_j, zero);
            }
            if never_zero {
                smallest_derivative = d.abs().min_or_keep(smallest_derivative);
            }
        }
        k += units;
    }
    // Padding lanes have dz = 0 (not counted as nonzero, and outside `rows·valid·W`) and
    // f'(0) (which may count): masked out.
    let mask = if partial {
        R::load_partial(&[1.0; 16], valid)
    } else {
        one
    };
    let mut recount = false;
    if extremes_only {
        let (max_abs, min_abs) = lane_extremes(lanes.max, smallest);
        // No zero (a NaN is ignored here; it makes the sums NaN, and the caller then
        // counts exactly).
        recount = min_abs <= 0.0;
        tally.magnitudes.merge(&Magnitudes {
            zero: 0,
            tiny: 0,
            max_abs,
            min_nonzero_abs: min_abs,
        });
    } else {
        tally.magnitudes.merge(&lanes.finish(rows * valid * W));
    }
    let [a, q] = tally.unscaled_sums;
    tally.unscaled_sums = [a + sum_abs.reduce_sum(), q + sum_squares.reduce_sum()];
    let count = |v: R| (v * mask).reduce_sum() as u64;
    for (&zero_j, &below_j) in all_zero.iter().zip(all_below.iter()) {
        if can_die {
            tally.dead += count(zero_j);
        }
        if saturates {
            tally.saturated += count(below_j);
        }
    }
    let valid_lanes = R::select(mask.gt(zero), smallest_derivative, infinity);
    let (_, min_derivative) = lane_extremes(zero, valid_lanes);
    tally.derivative_tiny += u64::from(min_derivative < f32::MIN_POSITIVE);
    recount
}

/// The counts and extremes of `values` ([`Magnitudes`], tiny values still to be counted
/// with [`with_tiny`]) in four chains: what a column block that kept only extremes counts
/// again when it saw a zero. (Inlined, so that it runs with the caller's instruction set.)
#[inline(always)]
fn magnitudes<V: Vector>(values: &[f32]) -> Magnitudes {
    let mut total = Magnitudes::EMPTY;
    for block in values.chunks(V::LANES << 20) {
        let mut lanes = [MagnitudeLanes::<V>::new(); 4];
        let mut quads = block.chunks_exact(4 * V::LANES);
        for c in &mut quads {
            for (j, l) in lanes.iter_mut().enumerate() {
                l.add(V::load(lane(c, j * V::LANES)));
            }
        }
        let mut l0 = MagnitudeLanes::merged(lanes);
        let mut chunks = quads.remainder().chunks_exact(V::LANES);
        for c in &mut chunks {
            l0.add(V::load(c));
        }
        let mut rest = MagnitudeLanes::<f32>::new();
        for &v in chunks.remainder() {
            rest.add(v);
        }
        let tail = chunks.remainder().len();
        let mut m = l0.finish(block.len() - tail);
        m.merge(&rest.finish(tail));
        total.merge(&m);
    }
    total
}

/// Underflow attribution of `dz = dy·f'(z)` (a second pass, run only when some dz or f' is
/// zero or subnormal): `[became_zero, became_subnormal, zeros]` where, with dy nonzero and
/// finite,
/// * became zero: dz = 0 although f' is nonzero, or is zero although f' is never zero
///   mathematically (f' itself underflowed);
/// * became subnormal: dz is subnormal and differs from the exact product dy·f'(z)
///   (IEEE 754's underflow: tiny and inexact), or dz ≠ 0 behind an f' that underflowed
///   (zero or subnormal although never zero);
/// * zeros: every dz that is ±0 (the structural ones are zeros − became zero).
///
/// `lost_derivatives` says whether the first pass saw some f' underflow; if not, f' is
/// recomputed only for the vectors with a zero or subnormal dz. The lanes of a vector in
/// which some dz or f' is zero or subnormal are classified one by one (exactness by integer
/// significands).
#[inline(always)]
pub(crate) fn attribute_underflow<V: Vector, A: Elementwise>(
    activation: &A,
    z: &[f32],
    dy: &[f32],
    dz: &[f32],
    lost_derivatives: bool,
) -> [u64; 3] {
    let never_zero = activation.derivative_never_zero();
    let lost_derivatives = lost_derivatives && never_zero;
    let n = z.len().min(dy.len()).min(dz.len());
    let (z, dy, dz) = (head(z, n), head(dy, n), head(dz, n));
    let mut out = [0u64; 3];
    let mut classify = |g: f32, d: f32, p: f32| {
        let lost = never_zero && d.abs() < f32::MIN_POSITIVE;
        let g_ok = g != 0.0 && g.is_finite();
        if p == 0.0 {
            out[2] += 1;
            out[0] += u64::from(g_ok && (d != 0.0 || lost));
        } else if g_ok && p.is_finite() {
            let tiny = p.abs() < f32::MIN_POSITIVE;
            let inexact = !crate::lanes::product_is_exact(g, d, p);
            out[1] += u64::from(lost || (tiny && inexact));
        }
    };
    let (zero, min) = (V::splat(0.0), V::splat(f32::MIN_POSITIVE));
    const { assert!(V::LANES <= 16, "the lane buffer holds 16 lanes") };
    let mut lanes = [0.0f32; 16];
    let mut k = 0;
    while k + V::LANES <= n {
        let p = V::load(lane(dz, k));
        let mut suspect = V::count_where(p.abs().lt(min), zero);
        // f' (the expensive part) only where it can matter: a vector with a tiny dz, or
        // any vector when some f' underflowed.
        let derivative = |k: usize| activation.derivative_lanes(V::load(lane(z, k)));
        let mut d = None;
        if lost_derivatives {
            let dk = derivative(k);
            suspect = V::count_where(dk.abs().lt(min), suspect);
            d = Some(dk);
        }
        if suspect.reduce_sum() > 0.0 {
            d.unwrap_or_else(|| derivative(k)).store(&mut lanes);
            let at = |s: &[f32], j: usize| s.get(k + j).copied().unwrap_or(0.0);
            for (j, &dj) in lanes.iter().enumerate().take(V::LANES) {
                classify(at(dy, j), dj, at(dz, j));
            }
        }
        k += V::LANES;
    }
    for ((&zk, &g), &p) in z.iter().zip(dy).zip(dz).skip(k) {
        classify(g, activation.derivative(zk), p);
    }
    out
}

/// The statistics of a slice in one pass over memory (see [`moments`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments {
    /// Counts (zero when not asked for) and extremes.
    pub magnitudes: Magnitudes,
    /// E: every |v| is below 2^E (at least the `scale_exponent` passed in).
    pub scale_exponent: i32,
    /// Σ |v|·2^-E (0 when counts were not asked for).
    pub sum_abs: f32,
    /// Σ (|v|·2^-E)².
    pub sum_squares: f32,
}

/// Counts, extremes and the power-of-two-scaled sums of `values`, starting from the scale
/// 2^`scale_exponent`, in blocks of 2048 values: the first pass over a block ([`magnitudes`])
/// brings it into L1 and finds its maximum; if that needs a larger scale, the partial sums
/// are rescaled by an exact power of two; the second pass sums the block from L1.
/// Non-finite values make `sum_squares` non-finite (callers then count exactly).
#[inline(always)]
pub(crate) fn moments<V: Vector>(values: &[f32], scale_exponent: i32) -> Moments {
    const BLOCK: usize = 2048;
    if V::UNROLL == 1 {
        return moments_one_lane(values, scale_exponent);
    }
    // Four independent accumulators everywhere: max, min and the sums are loop-carried
    // chains whose latency (3–4 cycles) would otherwise bound the loops.
    let mut e = scale_exponent;
    let mut total = Magnitudes::EMPTY;
    let (mut abs, mut squares) = ([V::splat(0.0); 4], [V::splat(0.0); 4]);
    let (mut tail_abs, mut tail_squares) = (0.0f32, 0.0f32);
    for block in values.chunks(BLOCK) {
        let m = with_tiny(magnitudes::<V>(block), block);
        total.merge(&m);
        if m.max_abs == f32::INFINITY {
            // An ∞: the sums become ∞ (a NaN makes them NaN below).
            squares[0] = V::splat(f32::INFINITY);
            break;
        }
        if m.max_abs > 0.0 {
            let needed = crate::lanes::exponent_bound(m.max_abs);
            if needed > e {
                let shift = e - needed;
                for a in abs.iter_mut() {
                    *a = crate::lanes::scale_by_pow2(*a, shift);
                }
                for q in squares.iter_mut() {
                    *q = crate::lanes::scale_by_pow2(*q, 2 * shift);
                }
                tail_abs = crate::lanes::scale_by_pow2(tail_abs, shift);
                tail_squares = crate::lanes::scale_by_pow2(tail_squares, 2 * shift);
                e = needed;
            }
        }
        let inverse = crate::lanes::pow2_wide(-e);
        let rest = add_scaled_vectors(block, V::splat(inverse), &mut abs, &mut squares);
        for &v in rest {
            let s = v.abs() * inverse;
            tail_abs += s;
            tail_squares += s * s;
        }
    }
    let [a0, a1, a2, a3] = abs;
    let [q0, q1, q2, q3] = squares;
    Moments {
        magnitudes: total,
        scale_exponent: e,
        sum_abs: ((a0 + a1) + (a2 + a3)).reduce_sum() + tail_abs,
        sum_squares: ((q0 + q1) + (q2 + q3)).reduce_sum() + tail_squares,
    }
}

// ---------------------------------------------------------------------------------------
// Batch normalization. Batches are `[rows][features]` flattened; every body works on
// `LANES` features at a time (one lane per feature, the rows in order), then on the
// remaining features at `f32`: per feature the same operations in the same order, none
// fused, so every backend gives the same bits.
// ---------------------------------------------------------------------------------------

/// Feature `j..j+R::LANES` of row `row`, zeros past the end.
#[inline(always)]
fn feature_lanes<R: Vector>(s: &[f32], features: usize, row: usize, j: usize) -> R {
    R::load(lane(s, row * features + j))
}

/// Writes `v` to feature `j..` of row `row` (nothing past the end).
#[inline(always)]
fn store_feature_lanes<R: Vector>(v: R, s: &mut [f32], features: usize, row: usize, j: usize) {
    if let Some(out) = s.get_mut(row * features + j..) {
        v.store(out);
    }
}

/// 1/√(variance + ε), correctly rounded twice.
#[inline(always)]
fn inverse_deviation<R: Lanes>(variance: R, epsilon: f32) -> R {
    R::splat(1.0) / (variance + R::splat(epsilon)).sqrt()
}

/// Mean, biased and unbiased variance of `R::LANES` features over `rows` rows. The mean is
/// shifted by the first row (x₀ + Σ(x − x₀)/B: the differences are exact for features whose
/// spread is small against their mean, so a feature around 1e4 keeps its digits), the
/// variance is a second pass over the squared deviations from that mean (no E[x²] − E[x]²
/// cancellation). With fewer than two rows the unbiased variance is the biased one (0).
#[inline(always)]
fn column_statistics<R: Vector>(x: &[f32], features: usize, rows: usize, j: usize) -> [R; 3] {
    let zero = R::splat(0.0);
    if rows == 0 {
        return [zero; 3];
    }
    let first = feature_lanes::<R>(x, features, 0, j);
    let mut shifted = zero;
    for row in 1..rows {
        shifted = shifted + (feature_lanes::<R>(x, features, row, j) - first);
    }
    let count = R::splat(rows as f32);
    let mean = first + shifted / count;
    let mut squares = zero;
    for row in 0..rows {
        let d = feature_lanes::<R>(x, features, row, j) - mean;
        squares = squares + d * d;
    }
    let variance = squares / count;
    let unbiased = if rows > 1 {
        squares / R::splat((rows - 1) as f32)
    } else {
        variance
    };
    [mean, variance, unbiased]
}

/// Per-feature statistics of a batch (`x` is `[rows][features]`): `mean`, biased
/// `variance` and `unbiased` variance, each of `features` values.
#[inline(always)]
pub(crate) fn batch_statistics<V: Vector>(
    x: &[f32],
    features: usize,
    mean: &mut [f32],
    variance: &mut [f32],
    unbiased: &mut [f32],
) {
    let n = features
        .min(mean.len())
        .min(variance.len())
        .min(unbiased.len());
    let rows = x.len().checked_div(features).unwrap_or(0);
    let mut j = 0;
    while j + V::LANES <= n {
        let [m, v, u] = column_statistics::<V>(x, features, rows, j);
        m.store(lane_mut(mean, j));
        v.store(lane_mut(variance, j));
        u.store(lane_mut(unbiased, j));
        j += V::LANES;
    }
    while j < n {
        let [m, v, u] = column_statistics::<f32>(x, features, rows, j);
        m.store(lane_mut(mean, j));
        v.store(lane_mut(variance, j));
        u.store(lane_mut(unbiased, j));
        j += 1;
    }
}

/// `s[k..]` mutably, empty if `k` is past the end.
#[inline(always)]
fn lane_mut(s: &mut [f32], k: usize) -> &mut [f32] {
    s.get_mut(k..).unwrap_or(&mut [])
}

/// The per-feature constants of one batch-norm pass over `R::LANES` features.
#[derive(Clone, Copy)]
struct FeatureConstants<R> {
    mean: R,
    inverse: R,
    gamma: R,
}

#[inline(always)]
fn feature_constants<R: Vector>(
    mean: &[f32],
    variance: &[f32],
    gamma: &[f32],
    epsilon: f32,
    j: usize,
) -> FeatureConstants<R> {
    FeatureConstants {
        mean: R::load(lane(mean, j)),
        inverse: inverse_deviation(R::load(lane(variance, j)), epsilon),
        gamma: R::load(lane(gamma, j)),
    }
}

/// x̂ = (x − mean)·(1/√(var + ε)).
#[inline(always)]
fn normalized<R: Lanes>(x: R, c: &FeatureConstants<R>) -> R {
    (x - c.mean) * c.inverse
}

/// `z = γ·x̂ + β` for `R::LANES` features of every row.
#[inline(always)]
fn normalize_columns<R: Vector>(
    x: &[f32],
    features: usize,
    rows: usize,
    c: &FeatureConstants<R>,
    beta: R,
    z: &mut [f32],
    j: usize,
) {
    for row in 0..rows {
        let v = c.gamma * normalized(feature_lanes::<R>(x, features, row, j), c) + beta;
        store_feature_lanes(v, z, features, row, j);
    }
}

/// `z = γ·(x − mean)/√(variance + ε) + β` per feature over a batch `[rows][features]`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn batch_normalize<V: Vector>(
    x: &[f32],
    features: usize,
    mean: &[f32],
    variance: &[f32],
    epsilon: f32,
    gamma: &[f32],
    beta: &[f32],
    z: &mut [f32],
) {
    let n = features
        .min(mean.len())
        .min(variance.len())
        .min(gamma.len())
        .min(beta.len());
    let rows = x.len().min(z.len()).checked_div(features).unwrap_or(0);
    let mut j = 0;
    while j + V::LANES <= n {
        let c = feature_constants::<V>(mean, variance, gamma, epsilon, j);
        normalize_columns(x, features, rows, &c, V::load(lane(beta, j)), z, j);
        j += V::LANES;
    }
    while j < n {
        let c = feature_constants::<f32>(mean, variance, gamma, epsilon, j);
        normalize_columns(x, features, rows, &c, f32::load(lane(beta, j)), z, j);
        j += 1;
    }
}

/// What [`batch_norm_backward`] needs besides the slices.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormBackward {
    /// Features per row.
    pub features: usize,
    /// ε of the layer.
    pub epsilon: f32,
    /// True if `mean` and `variance` are the batch's own (the full batch-coupled gradient),
    /// false if they were constants (running statistics: dx = γ·dz/√(var + ε)).
    pub batch_statistics: bool,
    /// Overwrite or add to dγ and dβ.
    pub mode: GradMode,
}

/// dγ, dβ and (if `dx` is not empty) dx of `R::LANES` features.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_columns<R: Vector>(
    x: &[f32],
    dz: &[f32],
    rows: usize,
    c: &FeatureConstants<R>,
    p: &BatchNormBackward,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
    j: usize,
) {
    let f = p.features;
    let (mut sum, mut sum_normalized) = (R::splat(0.0), R::splat(0.0));
    for row in 0..rows {
        let g = feature_lanes::<R>(dz, f, row, j);
        sum = sum + g;
        sum_normalized = sum_normalized + g * normalized(feature_lanes::<R>(x, f, row, j), c);
    }
    let (dg, db) = (lane_mut(dgamma, j), lane_mut(dbeta, j));
    if p.mode == GradMode::Accumulate {
        (R::load(dg) + sum_normalized).store(dg);
        (R::load(db) + sum).store(db);
    } else {
        sum_normalized.store(dg);
        sum.store(db);
    }
    if dx.is_empty() {
        return;
    }
    let k = c.gamma * c.inverse;
    let count = R::splat(rows as f32);
    let (mean_g, mean_gn) = (sum / count, sum_normalized / count);
    for row in 0..rows {
        let g = feature_lanes::<R>(dz, f, row, j);
        let v = if p.batch_statistics {
            let n = normalized(feature_lanes::<R>(x, f, row, j), c);
            k * ((g - mean_g) - n * mean_gn)
        } else {
            k * g
        };
        store_feature_lanes(v, dx, f, row, j);
    }
}

/// The backward of `z = γ·x̂ + β` over a batch: dγ = Σ dz·x̂, dβ = Σ dz and, if `dx` is not
/// empty, dx = γ/σ·((dz − mean(dz)) − x̂·mean(dz·x̂)) with batch statistics, γ/σ·dz without.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn batch_norm_backward<V: Vector>(
    x: &[f32],
    dz: &[f32],
    mean: &[f32],
    variance: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
    p: &BatchNormBackward,
) {
    let features = p.features;
    let n = features
        .min(mean.len())
        .min(variance.len())
        .min(gamma.len())
        .min(dgamma.len())
        .min(dbeta.len());
    let rows = x.len().min(dz.len()).checked_div(features).unwrap_or(0);
    let dx = if dx.len() >= rows * features {
        dx
    } else {
        &mut []
    };
    let mut j = 0;
    while j + V::LANES <= n {
        let c = feature_constants::<V>(mean, variance, gamma, p.epsilon, j);
        backward_columns(x, dz, rows, &c, p, dgamma, dbeta, dx, j);
        j += V::LANES;
    }
    while j < n {
        let c = feature_constants::<f32>(mean, variance, gamma, p.epsilon, j);
        backward_columns(x, dz, rows, &c, p, dgamma, dbeta, dx, j);
        j += 1;
    }
}
