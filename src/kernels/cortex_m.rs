//! Cortex-M (ARMv7E-M/ARMv8-M with a single-precision FPU) kernels: the dense forward, the
//! weight and input gradients and the SGD and momentum updates as hand-scheduled VFP code, because LLVM
//! loads every f32 with its own `vldr` and keeps no sums in registers across loops.
//!
//! Forward: two output rows and eight inputs per block, three `vldmia` and sixteen
//! `vmla.f32` for 16 multiply-adds. dW: a 2×8 block of the gradient stays in registers over
//! the batch. dX: eight sums per sample, two weight rows per iteration. `vmla.f32` is the
//! *non-fused* multiply-accumulate (the product is rounded, then the sum), and each sum adds
//! its terms in the portable loop's order, so every result equals `kernels::scalar`'s
//! portable loop bit for bit (checked on the device by the firmware tests against
//! host-computed values and against naive loops).

/// `asm!` with the VFP registers the kernels use (s0-s27) declared clobbered and no stack
/// use. (Stable `asm!` takes no VFP register operands without the `vfp2` feature, so values
/// go through memory and the registers are named in the template.)
macro_rules! vfp_asm {
    ($($body:tt)*) => {
        core::arch::asm!(
            $($body)*
            out("s0") _,
            out("s1") _,
            out("s2") _,
            out("s3") _,
            out("s4") _,
            out("s5") _,
            out("s6") _,
            out("s7") _,
            out("s8") _,
            out("s9") _,
            out("s10") _,
            out("s11") _,
            out("s12") _,
            out("s13") _,
            out("s14") _,
            out("s15") _,
            out("s16") _,
            out("s17") _,
            out("s18") _,
            out("s19") _,
            out("s20") _,
            out("s21") _,
            out("s22") _,
            out("s23") _,
            out("s24") _,
            out("s25") _,
            out("s26") _,
            out("s27") _,
            options(nostack),
        )
    };
}

/// One block: eight inputs of x (s16-s23), eight weights of each of two rows (s0-s7,
/// s8-s15), and sixteen non-fused multiply-accumulates into s24 (row 0) and s25 (row 1), each
/// row's products added in input order. `{px}`, `{p0}`, `{p1}` advance by 32 bytes.
macro_rules! block_2x8 {
    () => {
        concat!(
            "vldmia {px}!, {{s16-s23}}\n",
            "vldmia {p0}!, {{s0-s7}}\n",
            "vldmia {p1}!, {{s8-s15}}\n",
            "vmla.f32 s24, s0, s16\n",
            "vmla.f32 s25, s8, s16\n",
            "vmla.f32 s24, s1, s17\n",
            "vmla.f32 s25, s9, s17\n",
            "vmla.f32 s24, s2, s18\n",
            "vmla.f32 s25, s10, s18\n",
            "vmla.f32 s24, s3, s19\n",
            "vmla.f32 s25, s11, s19\n",
            "vmla.f32 s24, s4, s20\n",
            "vmla.f32 s25, s12, s20\n",
            "vmla.f32 s24, s5, s21\n",
            "vmla.f32 s25, s13, s21\n",
            "vmla.f32 s24, s6, s22\n",
            "vmla.f32 s25, s14, s22\n",
            "vmla.f32 s24, s7, s23\n",
            "vmla.f32 s25, s15, s23\n",
        )
    };
}

/// Eight +0.0: the start values of the accumulating kernels' sums when they overwrite.
static ZEROS: [f32; 8] = [0.0; 8];

/// `(Σ_{k<8·blocks} w0[k]·x[k], Σ_{k<8·blocks} w1[k]·x[k])`, each summed in order from +0.0.
/// Returns `(0, 0)` if a slice is shorter than `8·blocks`.
#[inline(always)]
pub(crate) fn dot2_blocks(w0: &[f32], w1: &[f32], x: &[f32], blocks: usize) -> (f32, f32) {
    let mut acc = [0.0f32; 2];
    let needed = blocks.saturating_mul(8);
    if blocks == 0 || w0.len() < needed || w1.len() < needed || x.len() < needed {
        return (0.0, 0.0);
    }
    // SAFETY: the three pointers are valid for reads of `8·blocks` f32 (checked above) and
    // are only read; `acc` is a valid, aligned [f32; 2] that is read and written; `blocks`
    // is at least 1, so the count-down loop ends. Every VFP register the code writes
    // (s0-s25) is declared as clobbered (`vfp_asm!` names s0-s27), and the core registers it changes are inout
    // operands; the flags changed by `subs` are not declared preserved.
    unsafe {
        vfp_asm!(
            "vldr s24, [{acc}]",
            "vldr s25, [{acc}, #4]",
            "2:",
            block_2x8!(),
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstr s24, [{acc}]",
            "vstr s25, [{acc}, #4]",
            p0 = inout(reg) w0.as_ptr() => _,
            p1 = inout(reg) w1.as_ptr() => _,
            px = inout(reg) x.as_ptr() => _,
            n = inout(reg) blocks => _,
            acc = in(reg) acc.as_mut_ptr(),
        );
    }
    (acc[0], acc[1])
}

/// One sample of a dense forward, `z[o] = (Σ_i w[o][i]·x[i]) + b[o]` for `2·pairs` outputs,
/// with `inputs` a nonzero multiple of 16 and `w` row-major (`2·pairs` rows of `inputs`).
/// The whole loop over row pairs runs in VFP code (per pair: 16 inputs per iteration as two
/// blocks of [`dot2_blocks`], then the bias added and both outputs stored). Returns `false`, touching
/// nothing, if the shapes do not fit.
#[inline(always)]
pub(crate) fn dense_rows(
    w: &[f32],
    b: &[f32],
    x: &[f32],
    z: &mut [f32],
    inputs: usize,
    pairs: usize,
) -> bool {
    let rows = pairs.saturating_mul(2);
    let fits = pairs > 0
        && inputs >= 16
        && inputs.is_multiple_of(16)
        && inputs <= 1 << 24
        && w.len() >= rows.saturating_mul(inputs)
        && b.len() >= rows
        && z.len() >= rows
        && x.len() >= inputs;
    if !fits {
        return false;
    }
    // SAFETY: `w` holds `2·pairs` rows of `inputs` f32, `x` holds `inputs`, `b` and `z` hold
    // `2·pairs` (checked above), so every vldmia/vstmia stays inside its slice; `z` is the
    // only memory written and is borrowed mutably. `pairs` ≥ 1 and `inputs / 16` ≥ 1, so both
    // count-down loops end. All VFP registers written (s0-s27) are declared clobbered; the
    // core registers changed are inout operands; `subs` changes the flags, which are not
    // declared preserved.
    unsafe {
        vfp_asm!(
            "3:",
            "mov {px}, {x0}",
            "add {p1}, {p0}, {stride}",
            "movs {n}, #0",
            "vmov s24, {n}",
            "vmov s25, {n}",
            "lsrs {n}, {stride}, #6",
            "2:",
            block_2x8!(),
            block_2x8!(),
            "subs {n}, {n}, #1",
            "bne 2b",
            "vldmia {pb}!, {{s26-s27}}",
            "vadd.f32 s24, s24, s26",
            "vadd.f32 s25, s25, s27",
            "vstmia {pz}!, {{s24-s25}}",
            "mov {p0}, {p1}",
            "subs {m}, {m}, #1",
            "bne 3b",
            p0 = inout(reg) w.as_ptr() => _,
            p1 = out(reg) _,
            px = out(reg) _,
            x0 = in(reg) x.as_ptr(),
            stride = in(reg) inputs * 4,
            n = out(reg) _,
            pb = inout(reg) b.as_ptr() => _,
            pz = inout(reg) z.as_mut_ptr() => _,
            m = inout(reg) pairs => _,
        );
    }
    true
}

/// SGD on the whole blocks of eight of `w` and `g` (over their common length): `w −= lr·(g +
/// weight_decay·w)` with the non-fused `vmla.f32` and `vmls.f32`, the two roundings of the
/// portable `sgd_step`, so the results are the same bit for bit. Per eight weights two
/// `vldmia`, sixteen multiply-accumulates and one `vstmia`. Returns how many weights it
/// updated (a multiple of 8).
#[inline(always)]
pub(crate) fn sgd_blocks(w: &mut [f32], g: &[f32], lr: f32, weight_decay: f32) -> usize {
    let blocks = w.len().min(g.len()) / 8;
    if blocks == 0 {
        return 0;
    }
    let constants = [weight_decay, lr];
    // SAFETY: `w` and `g` hold at least `8·blocks` f32 each (blocks is their common length
    // over 8), `constants` holds two; `w` is the only memory written and is borrowed mutably
    // (so it overlaps nothing read). `blocks` ≥ 1, so the count-down loop ends. Every VFP
    // register written (s0-s17) is declared clobbered (`vfp_asm!` names s0-s27); the core
    // registers changed are inout operands; `subs` changes the flags, which are not
    // declared preserved.
    unsafe {
        vfp_asm!(
            "vldmia {k}, {{s16-s17}}",
            "2:",
            "vldmia {pw}, {{s0-s7}}",
            "vldmia {pg}!, {{s8-s15}}",
            "vmla.f32 s8, s16, s0",
            "vmla.f32 s9, s16, s1",
            "vmla.f32 s10, s16, s2",
            "vmla.f32 s11, s16, s3",
            "vmla.f32 s12, s16, s4",
            "vmla.f32 s13, s16, s5",
            "vmla.f32 s14, s16, s6",
            "vmla.f32 s15, s16, s7",
            "vmls.f32 s0, s17, s8",
            "vmls.f32 s1, s17, s9",
            "vmls.f32 s2, s17, s10",
            "vmls.f32 s3, s17, s11",
            "vmls.f32 s4, s17, s12",
            "vmls.f32 s5, s17, s13",
            "vmls.f32 s6, s17, s14",
            "vmls.f32 s7, s17, s15",
            "vstmia {pw}!, {{s0-s7}}",
            "subs {n}, {n}, #1",
            "bne 2b",
            pw = inout(reg) w.as_mut_ptr() => _,
            pg = inout(reg) g.as_ptr() => _,
            k = in(reg) constants.as_ptr(),
            n = inout(reg) blocks => _,
        );
    }
    blocks * 8
}

/// `dw0[k] (+)= Σ_s g[s·g_stride]·x[s·x_stride + k]` and `dw1[k] (+)= Σ_s g[s·g_stride +
/// 1]·x[s·x_stride + k]` for k < 8 and s < `samples`: one block of eight columns of two rows of a
/// weight gradient, the samples added in order with non-fused `vmla.f32` (so each element is
/// the portable loop's `dw += g·x`, sample after sample, bit for bit). The block stays in
/// registers across the samples: per sample one `vldmia` of x, one of the two gradients
/// and sixteen multiply-accumulates. With `from_zero` the sums start at +0.0 instead of the
/// values in `dw0` and `dw1` (which are then only written: no separate zeroing pass).
/// Strides are in f32. Returns `false`, touching nothing, if a slice is too short or
/// `samples` is 0.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn outer_block_2x8(
    dw0: &mut [f32],
    dw1: &mut [f32],
    from_zero: bool,
    g: &[f32],
    g_stride: usize,
    x: &[f32],
    x_stride: usize,
    samples: usize,
) -> bool {
    if !outer_block_fits(dw0, dw1, g, g_stride, x, x_stride, samples) {
        return false;
    }
    let (start0, start1) = if from_zero {
        (ZEROS.as_ptr(), ZEROS.as_ptr())
    } else {
        (dw0.as_ptr(), dw1.as_ptr())
    };
    // SAFETY: `dw0` and `dw1` hold eight f32 each and are the only memory written (two
    // distinct mutable borrows, so they overlap nothing read); the start values are read
    // from them or from `ZEROS` (eight f32); for every s < `samples` the
    // reads g[s·g_stride..+2] and x[s·x_stride..+8] lie inside the slices (checked above
    // without overflow; the byte strides fit a usize). `samples` ≥ 1, so the
    // count-down loop ends. Every VFP register written (s0-s25) is declared clobbered
    // (`vfp_asm!` names s0-s27); the core registers changed are inout operands; `subs`
    // changes the flags, which are not declared preserved.
    unsafe {
        vfp_asm!(
            "vldmia {a0}, {{s0-s7}}",
            "vldmia {a1}, {{s8-s15}}",
            "2:",
            "vldmia {px}, {{s16-s23}}",
            "add {px}, {px}, {sx}",
            "vldmia {pg}, {{s24-s25}}",
            "add {pg}, {pg}, {sg}",
            "vmla.f32 s0, s24, s16",
            "vmla.f32 s8, s25, s16",
            "vmla.f32 s1, s24, s17",
            "vmla.f32 s9, s25, s17",
            "vmla.f32 s2, s24, s18",
            "vmla.f32 s10, s25, s18",
            "vmla.f32 s3, s24, s19",
            "vmla.f32 s11, s25, s19",
            "vmla.f32 s4, s24, s20",
            "vmla.f32 s12, s25, s20",
            "vmla.f32 s5, s24, s21",
            "vmla.f32 s13, s25, s21",
            "vmla.f32 s6, s24, s22",
            "vmla.f32 s14, s25, s22",
            "vmla.f32 s7, s24, s23",
            "vmla.f32 s15, s25, s23",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {d0}, {{s0-s7}}",
            "vstmia {d1}, {{s8-s15}}",
            a0 = in(reg) start0,
            a1 = in(reg) start1,
            d0 = in(reg) dw0.as_mut_ptr(),
            d1 = in(reg) dw1.as_mut_ptr(),
            px = inout(reg) x.as_ptr() => _,
            pg = inout(reg) g.as_ptr() => _,
            sx = in(reg) x_stride * 4,
            sg = in(reg) g_stride * 4,
            n = inout(reg) samples => _,
        );
    }
    true
}

/// SGD with momentum on the whole blocks of eight of `w`, `g` and `velocity` (over their
/// common length): `v = μ·v + (g + λ·w)`, `w −= lr·v`, with the non-fused `vmla.f32` and
/// `vmls.f32`, the roundings of the portable `momentum_step` in its order (`g + λ·w`, then
/// that plus `μ·v`, then `w − lr·v`), so the results are the same bit for bit (NaN payloads
/// aside). Per eight weights three `vldmia`, 24 multiply-accumulates and two `vstmia`.
/// Returns how many weights it updated (a multiple of 8).
#[inline(always)]
pub(crate) fn momentum_blocks(
    w: &mut [f32],
    g: &[f32],
    velocity: &mut [f32],
    lr: f32,
    mu: f32,
    weight_decay: f32,
) -> usize {
    let blocks = w.len().min(g.len()).min(velocity.len()) / 8;
    if blocks == 0 {
        return 0;
    }
    let constants = [weight_decay, mu, lr];
    // SAFETY: `w`, `g` and `velocity` hold at least `8·blocks` f32 each (blocks is their
    // common length over 8), `constants` holds three; `w` and `velocity` are the only
    // memory written, both borrowed mutably (so they overlap each other and nothing read).
    // `blocks` ≥ 1, so the count-down loop ends. Every VFP register written (s0-s26) is
    // declared clobbered (`vfp_asm!` names s0-s27); the core registers changed are inout
    // operands; `subs` changes the flags, which are not declared preserved.
    unsafe {
        vfp_asm!(
            "vldmia {k}, {{s24-s26}}",
            "2:",
            "vldmia {pw}, {{s0-s7}}",
            "vldmia {pg}!, {{s8-s15}}",
            "vldmia {pv}, {{s16-s23}}",
            "vmla.f32 s8, s24, s0",
            "vmla.f32 s9, s24, s1",
            "vmla.f32 s10, s24, s2",
            "vmla.f32 s11, s24, s3",
            "vmla.f32 s12, s24, s4",
            "vmla.f32 s13, s24, s5",
            "vmla.f32 s14, s24, s6",
            "vmla.f32 s15, s24, s7",
            "vmla.f32 s8, s25, s16",
            "vmla.f32 s9, s25, s17",
            "vmla.f32 s10, s25, s18",
            "vmla.f32 s11, s25, s19",
            "vmla.f32 s12, s25, s20",
            "vmla.f32 s13, s25, s21",
            "vmla.f32 s14, s25, s22",
            "vmla.f32 s15, s25, s23",
            "vmls.f32 s0, s26, s8",
            "vmls.f32 s1, s26, s9",
            "vmls.f32 s2, s26, s10",
            "vmls.f32 s3, s26, s11",
            "vmls.f32 s4, s26, s12",
            "vmls.f32 s5, s26, s13",
            "vmls.f32 s6, s26, s14",
            "vmls.f32 s7, s26, s15",
            "vstmia {pw}!, {{s0-s7}}",
            "vstmia {pv}!, {{s8-s15}}",
            "subs {n}, {n}, #1",
            "bne 2b",
            pw = inout(reg) w.as_mut_ptr() => _,
            pg = inout(reg) g.as_ptr() => _,
            pv = inout(reg) velocity.as_mut_ptr() => _,
            k = in(reg) constants.as_ptr(),
            n = inout(reg) blocks => _,
        );
    }
    blocks * 8
}

/// Whether [`outer_block_2x8`]'s slices hold what it reads and writes: eight values of
/// `dw0` and `dw1`, and for every s < `samples` (≥ 1) g[s·g_stride..+2] and
/// x[s·x_stride..+8], all without overflow (the byte strides included). Also the check of
/// the Helium block.
#[inline(always)]
pub(crate) fn outer_block_fits(
    dw0: &[f32],
    dw1: &[f32],
    g: &[f32],
    g_stride: usize,
    x: &[f32],
    x_stride: usize,
    samples: usize,
) -> bool {
    let last = samples.wrapping_sub(1);
    let reaches = |len: usize, stride: usize, width: usize| {
        (last.checked_mul(stride))
            .and_then(|v| v.checked_add(width))
            .is_some_and(|n| len >= n)
    };
    samples > 0
        && dw0.len() >= 8
        && dw1.len() >= 8
        && reaches(g.len(), g_stride, 2)
        && reaches(x.len(), x_stride, 8)
        && x_stride.checked_mul(4).is_some()
        && g_stride.checked_mul(4).is_some()
}

/// Whether [`axpy_rows_2x8`]'s slices hold what it reads and writes: eight values of `dx`,
/// g[0..2·pairs] and w[r·stride..+8] for r < 2·pairs (`pairs` ≥ 1), without overflow (the
/// byte stride included). Also the check of the Helium block.
#[inline(always)]
pub(crate) fn axpy_rows_fit(dx: &[f32], g: &[f32], w: &[f32], stride: usize, pairs: usize) -> bool {
    let rows = pairs.saturating_mul(2);
    pairs > 0
        && dx.len() >= 8
        && g.len() >= rows
        && stride.checked_mul(4).is_some()
        && (rows - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(8))
            .is_some_and(|n| w.len() >= n)
}

/// `dx[k] += Σ_{r < 2·pairs} g[r]·w[r·stride + k]` for k < 8, the rows added in order with
/// non-fused `vmla.f32`: one block of eight columns of an input gradient, the portable
/// loop's `dx += g·w_row`, row after row, bit for bit. Per pair of rows one `vldmia` of the
/// two gradients, two of the weights and sixteen multiply-accumulates into the eight
/// sums. With `from_zero` the sums start at +0.0 instead of the values in `dx` (then only
/// written). `stride` is in f32. Returns `false`, touching nothing, if a slice is too short
/// or `pairs` is 0.
#[inline(always)]
pub(crate) fn axpy_rows_2x8(
    dx: &mut [f32],
    from_zero: bool,
    g: &[f32],
    w: &[f32],
    stride: usize,
    pairs: usize,
) -> bool {
    if !axpy_rows_fit(dx, g, w, stride, pairs) {
        return false;
    }
    let start = if from_zero {
        ZEROS.as_ptr()
    } else {
        dx.as_ptr()
    };
    // SAFETY: `dx` holds eight f32 and is the only memory written (borrowed mutably, so it
    // overlaps nothing read); the start values are read from it or from `ZEROS` (eight
    // f32); the reads g[0..2·pairs] and w[r·stride..+8] for r < 2·pairs
    // lie inside the slices (checked above without overflow; the byte stride fits a usize).
    // `pairs` ≥ 1, so the count-down loop ends. Every VFP register written
    // (s0-s25) is declared clobbered (`vfp_asm!` names s0-s27); the core registers changed
    // are inout operands; `subs` changes the flags, which are not declared preserved.
    unsafe {
        vfp_asm!(
            "vldmia {start}, {{s0-s7}}",
            "2:",
            "vldmia {pg}!, {{s24-s25}}",
            "vldmia {pw}, {{s8-s15}}",
            "add {pw}, {pw}, {sw}",
            "vldmia {pw}, {{s16-s23}}",
            "add {pw}, {pw}, {sw}",
            "vmla.f32 s0, s24, s8",
            "vmla.f32 s1, s24, s9",
            "vmla.f32 s2, s24, s10",
            "vmla.f32 s3, s24, s11",
            "vmla.f32 s4, s24, s12",
            "vmla.f32 s5, s24, s13",
            "vmla.f32 s6, s24, s14",
            "vmla.f32 s7, s24, s15",
            "vmla.f32 s0, s25, s16",
            "vmla.f32 s1, s25, s17",
            "vmla.f32 s2, s25, s18",
            "vmla.f32 s3, s25, s19",
            "vmla.f32 s4, s25, s20",
            "vmla.f32 s5, s25, s21",
            "vmla.f32 s6, s25, s22",
            "vmla.f32 s7, s25, s23",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {pd}, {{s0-s7}}",
            start = in(reg) start,
            pd = in(reg) dx.as_mut_ptr(),
            pg = inout(reg) g.as_ptr() => _,
            pw = inout(reg) w.as_ptr() => _,
            sw = in(reg) stride * 4,
            n = inout(reg) pairs => _,
        );
    }
    true
}

/// The whole blocks of eight columns of one sample's input gradient, `dx[i] += Σ_o
/// g[o]·w[o·inputs + i]` in row order (rows in pairs by [`axpy_rows_2x8`], an odd last row
/// after them), `g` the sample's `outputs` gradients, `w` the `outputs × inputs` weights;
/// with `from_zero` the sums start at +0.0 (`dx` is only written). Returns the columns done
/// (0 if the slices are shorter than that).
#[inline(always)]
pub(crate) fn input_gradient_blocks(
    w: &[f32],
    g: &[f32],
    dx: &mut [f32],
    from_zero: bool,
    inputs: usize,
) -> usize {
    let (outputs, pairs) = (g.len(), g.len() / 2);
    let columns = dx.len().min(inputs) / 8 * 8;
    let fits =
        pairs > 0 && columns > 0 && inputs.checked_mul(outputs).is_some_and(|n| w.len() >= n);
    if !fits {
        return 0;
    }
    let last_row = w.get((outputs - 1) * inputs..).unwrap_or(&[]);
    let g_last = g.last().copied().unwrap_or(0.0);
    let (blocks, _) = dx.as_chunks_mut::<8>();
    for (k, block) in blocks.iter_mut().take(columns / 8).enumerate() {
        // Fits: the rows 0..2·pairs of w (checked above) cover columns 8k..8k + 8.
        let w = w.get(8 * k..).unwrap_or(&[]);
        // Helium first on builds for a CPU with MVE (it declines a block that would flush a
        // subnormal), else the VFP code.
        #[cfg(gradguard_mve)]
        let done = super::helium::axpy_rows_2x8(block, from_zero, g, w, inputs, pairs);
        #[cfg(not(gradguard_mve))]
        let done = false;
        if !done {
            let _fits = axpy_rows_2x8(block, from_zero, g, w, inputs, pairs);
        }
        if outputs % 2 == 1 {
            let row = last_row.get(8 * k..).unwrap_or(&[]);
            for (d, &v) in block.iter_mut().zip(row) {
                *d += g_last * v;
            }
        }
    }
    columns
}

/// The whole blocks of eight columns of the pairs of rows of a weight gradient, `dw[o][i] +=
/// Σ_s dz[s][o]·x[s][i]` in sample order, each block kept in registers over the samples by
/// [`outer_block_2x8`]; `dz` holds the samples' `outputs` gradients, `x` their `inputs`
/// values, `dw` is `outputs × inputs`; with `from_zero` the sums start at +0.0 (`dw` is
/// only written). Returns `(rows, columns)` done: all rows but an odd last one, the whole
/// blocks of columns ((0, 0) if the slices are shorter than that).
#[inline(always)]
pub(crate) fn weight_gradient_blocks(
    dz: &[f32],
    x: &[f32],
    dw: &mut [f32],
    from_zero: bool,
    inputs: usize,
    outputs: usize,
) -> (usize, usize) {
    let samples = dz.len().checked_div(outputs).unwrap_or(0);
    let columns = inputs / 8 * 8;
    let fits = samples > 0
        && columns > 0
        && outputs >= 2
        && inputs.checked_mul(samples).is_some_and(|n| x.len() >= n)
        && inputs.checked_mul(outputs).is_some_and(|n| dw.len() >= n);
    if !fits {
        return (0, 0);
    }
    let rows = outputs / 2 * 2;
    for (p, pair) in dw.chunks_exact_mut(2 * inputs).take(rows / 2).enumerate() {
        // (A chunk holds exactly 2·inputs values: the split always succeeds.)
        let Some((r0, r1)) = pair.split_at_mut_checked(inputs) else {
            break;
        };
        let g = dz.get(2 * p..).unwrap_or(&[]);
        let blocks = r0.as_chunks_mut::<8>().0.iter_mut();
        for (k, (b0, b1)) in blocks.zip(r1.as_chunks_mut::<8>().0).enumerate() {
            // Fits: every sample's two gradients and eight values lie in dz and x (above).
            let x = x.get(8 * k..).unwrap_or(&[]);
            // Helium first where the build has it (declining a block that would flush a
            // subnormal), else the VFP code.
            #[cfg(gradguard_mve)]
            let done =
                super::helium::outer_block_2x8(b0, b1, from_zero, g, outputs, x, inputs, samples);
            #[cfg(not(gradguard_mve))]
            let done = false;
            if !done {
                let _fits = outer_block_2x8(b0, b1, from_zero, g, outputs, x, inputs, samples);
            }
        }
    }
    (rows, columns)
}

/// Copies the whole blocks of eight f32 of `src` into `dst` (over their common length) with
/// `vldmia`/`vstmia`, which move the bits unchanged (NaN payloads included); returns how
/// many values it copied (a multiple of 8).
#[inline(always)]
pub(crate) fn copy_blocks(src: &[f32], dst: &mut [f32]) -> usize {
    let blocks = src.len().min(dst.len()) / 8;
    if blocks == 0 {
        return 0;
    }
    // SAFETY: `src` and `dst` hold at least `8·blocks` f32 each; `dst` is the only memory
    // written and is borrowed mutably (so it overlaps nothing read). `blocks` ≥ 1, so the
    // count-down loop ends. The VFP registers written (s0-s7) are declared clobbered
    // (`vfp_asm!` names s0-s27); the core registers changed are inout operands; `subs`
    // changes the flags, which are not declared preserved.
    unsafe {
        vfp_asm!(
            "2:",
            "vldmia {ps}!, {{s0-s7}}",
            "vstmia {pd}!, {{s0-s7}}",
            "subs {n}, {n}, #1",
            "bne 2b",
            ps = inout(reg) src.as_ptr() => _,
            pd = inout(reg) dst.as_mut_ptr() => _,
            n = inout(reg) blocks => _,
        );
    }
    blocks * 8
}

/// `$x = +0.0 (s8)` if `$x ≤ 0` (not for NaN): one step of [`relu_forward_blocks`].
macro_rules! relu_select {
    ($x:literal) => {
        concat!(
            "vcmp.f32 ",
            $x,
            ", #0\n",
            "vmrs APSR_nzcv, fpscr\n",
            "it ls\n",
            "vmovls.f32 ",
            $x,
            ", s8\n",
        )
    };
}

/// `$dy = $dy · d` with d = 1 (s8) if `$z > 0` (`gt`), 0 (s9) if `$z ≤ 0` (`ls`: less or
/// equal, not unordered) and `$z` itself if it is NaN (neither), built in `$z`'s register:
/// one step of [`relu_backward_blocks`].
macro_rules! relu_step {
    ($z:literal, $dy:literal) => {
        concat!(
            "vcmp.f32 ",
            $z,
            ", #0\n",
            "vmrs APSR_nzcv, fpscr\n",
            "it gt\n",
            "vmovgt.f32 ",
            $z,
            ", s8\n",
            "it ls\n",
            "vmovls.f32 ",
            $z,
            ", s9\n",
            "vmul.f32 ",
            $dy,
            ", ",
            $dy,
            ", ",
            $z,
            "\n",
        )
    };
}

/// ReLU over the whole blocks of eight of `z` into `out` (over their common length): `x`
/// for x > 0 or NaN, +0.0 otherwise, as `Relu::value_lanes` (`select(x ≤ 0, 0, x)`): one
/// compare with zero, its flags moved to the core, and a conditional move on `ls` (less,
/// equal: not unordered, so NaN passes). Returns how many values it wrote (a multiple of 8).
#[inline(always)]
#[cfg_attr(gradguard_mve, allow(dead_code))] // Helium builds run `helium::relu_forward_blocks`.
pub(crate) fn relu_forward_blocks(z: &[f32], out: &mut [f32]) -> usize {
    let blocks = z.len().min(out.len()) / 8;
    if blocks == 0 {
        return 0;
    }
    // SAFETY: `z` and `out` hold at least `8·blocks` f32 each; `out` is the only memory
    // written and is borrowed mutably (so it overlaps nothing read). `blocks` ≥ 1, so the
    // count-down loop ends. The VFP registers written (s0-s8) are declared clobbered
    // (`vfp_asm!` names s0-s27); the core registers changed are inout operands; `vmrs` and
    // `subs` change the flags, which are not declared preserved.
    unsafe {
        vfp_asm!(
            "vmov s8, {zero}",
            "2:",
            "vldmia {pz}!, {{s0-s7}}",
            relu_select!("s0"),
            relu_select!("s1"),
            relu_select!("s2"),
            relu_select!("s3"),
            relu_select!("s4"),
            relu_select!("s5"),
            relu_select!("s6"),
            relu_select!("s7"),
            "vstmia {pa}!, {{s0-s7}}",
            "subs {n}, {n}, #1",
            "bne 2b",
            zero = in(reg) 0u32,
            pz = inout(reg) z.as_ptr() => _,
            pa = inout(reg) out.as_mut_ptr() => _,
            n = inout(reg) blocks => _,
        );
    }
    blocks * 8
}

/// ReLU's backward over the whole blocks of four (over the common length): `dz = dy · d`
/// with d = 1 for z > 0, 0 for z ≤ 0 and z itself for a NaN z, the multiplication done as
/// in the generic kernel (`dy · f'(z)`), so the bits are the same (NaN payloads aside).
/// Per value one compare, its flags moved, two conditional moves and the multiply; only
/// s0-s9, no callee-saved register, so one out-of-line copy serves the tracked and the
/// untracked backward. Returns how many values it wrote (a multiple of 4).
#[inline(never)]
#[cfg_attr(gradguard_mve, allow(dead_code))] // Helium builds run `helium::relu_backward_blocks`.
pub(crate) fn relu_backward_blocks(z: &[f32], dy: &[f32], dz: &mut [f32]) -> usize {
    let blocks = z.len().min(dy.len()).min(dz.len()) / 4;
    if blocks == 0 {
        return 0;
    }
    let constants = [1.0f32, 0.0];
    // SAFETY: `z`, `dy` and `dz` hold at least `4·blocks` f32 each, `constants` two; `dz` is
    // the only memory written and is borrowed mutably (so it overlaps nothing read).
    // `blocks` ≥ 1, so the count-down loop ends. The VFP registers written (s0-s9) are
    // declared clobbered (`vfp_asm!` names s0-s27); the core registers changed are inout
    // operands; `vmrs` and `subs` change the flags, which are not declared preserved.
    unsafe {
        vfp_asm!(
            "vldmia {k}, {{s8-s9}}",
            "2:",
            "vldmia {pz}!, {{s0-s3}}",
            "vldmia {py}!, {{s4-s7}}",
            relu_step!("s0", "s4"),
            relu_step!("s1", "s5"),
            relu_step!("s2", "s6"),
            relu_step!("s3", "s7"),
            "vstmia {pd}!, {{s4-s7}}",
            "subs {n}, {n}, #1",
            "bne 2b",
            k = in(reg) constants.as_ptr(),
            pz = inout(reg) z.as_ptr() => _,
            py = inout(reg) dy.as_ptr() => _,
            pd = inout(reg) dz.as_mut_ptr() => _,
            n = inout(reg) blocks => _,
        );
    }
    blocks * 4
}
