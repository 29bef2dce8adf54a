//! Cortex-M (ARMv7E-M/ARMv8-M with a single-precision FPU) kernels: the dense-forward inner
//! loop and the SGD update as hand-scheduled VFP code, because LLVM loads every weight with
//! its own `vldr`.
//!
//! Two output rows and eight inputs per iteration: three `vldmia` and sixteen `vmla.f32`
//! for 16 multiply-adds. `vmla.f32` is the *non-fused* multiply-accumulate (the product is
//! rounded, then the sum), and each accumulator adds its products in input order, so the
//! result equals `kernels::scalar`'s portable loop bit for bit (checked on the device by the
//! firmware tests against host-computed values and against a naive loop).

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
