//! Helium (M-profile Vector Extension, floating point) kernels for Cortex-M55/M85 builds
//! (`gradguard_mve`, set by `build.rs` from `-C target-cpu=cortex-m55` and the like): the
//! dense forward, dW and dX blocks with four-lane `vfma.f32` by a scalar.
//!
//! Every sum keeps the portable loop's order (the forward's lanes are four output rows, so
//! each dot product still adds its inputs in order; dW's lanes are columns and its sums add
//! the samples in order; dX's add the rows in order), but each multiply-add is **fused** (one
//! rounding): MVE has no non-fused vector multiply-accumulate. So on these builds the three
//! matrix products follow the contract of the host's FMA backends (within
//! `kernels::matrix_error_bound` of the reference, bit for bit equal to a fused loop in the
//! reference order, which the firmware tests check); every other kernel is unchanged.
//!
//! **Subnormals.** MVE floating point flushes subnormal inputs and results to zero whatever
//! FPSCR.FZ says (QEMU's Cortex-M55 evaluates it with the "standard FPSCR value":
//! flush-to-zero, default NaN; silicon not checked). A flushed input can change a
//! product completely (3·10^38 × −3·10^-39 would give 0 instead of −0.9), and a false zero
//! is what this crate exists to report, so every block checks FPSCR's cumulative flags IDC
//! (an input was flushed) and UFC (a result underflowed) before it starts and before it
//! stores: if either is set, it stores nothing and returns `false`, and the caller computes
//! that block with the exact VFP code. gradguard only reads FPSCR (writing it is undefined
//! behaviour in Rust), so once a flag is set (UFC also by any tiny inexact result in scalar
//! code) the matrix products stay on the VFP path for the rest of the program: Helium speeds
//! up training whose values stay normal and never costs exactness.
//!
//! Stable `asm!` takes no vector register operands here, so values go through memory and the
//! registers are named in the templates; `mve_asm!` declares all of them (q0-q7) clobbered.

/// Eight +0.0: the start values of the accumulating kernels' sums when they overwrite.
static ZEROS: [f32; 8] = [0.0; 8];

/// `asm!` with the MVE/VFP registers q0-q7 (d0-d15) and the loop register lr declared
/// clobbered and no stack use.
macro_rules! mve_asm {
    ($($body:tt)*) => {
        core::arch::asm!(
            $($body)*
            out("d0") _,
            out("d1") _,
            out("d2") _,
            out("d3") _,
            out("d4") _,
            out("d5") _,
            out("d6") _,
            out("d7") _,
            out("d8") _,
            out("d9") _,
            out("d10") _,
            out("d11") _,
            out("d12") _,
            out("d13") _,
            out("d14") _,
            out("d15") _,
            out("lr") _,
            options(nostack),
        )
    };
}

/// One multiply-add step of the forward for both groups of four rows: the gathers of the
/// next weight of each row (the address vectors q0, q1 advance by 4 bytes) and the fused
/// multiply-adds by the input in `$x`.
macro_rules! forward_step {
    ($x:literal) => {
        concat!(
            "vldrw.u32 q4, [q0, #4]!\n",
            "vldrw.u32 q5, [q1, #4]!\n",
            "vfma.f32 q2, q4, ",
            $x,
            "\n",
            "vfma.f32 q3, q5, ",
            $x,
            "\n",
        )
    };
}

/// Four inputs of the forward: one `ldm` of x into r0-r3, then four [`forward_step!`]s.
macro_rules! forward_4 {
    () => {
        concat!(
            "ldm {x}!, {{r0, r1, r2, r3}}\n",
            forward_step!("r0"),
            forward_step!("r1"),
            forward_step!("r2"),
            forward_step!("r3"),
        )
    };
}

/// Sixteen inputs of the forward.
macro_rules! forward_16 {
    () => {
        concat!(forward_4!(), forward_4!(), forward_4!(), forward_4!())
    };
}

/// `groups` groups of eight outputs of one sample of a dense forward: `z[k] =
/// fma-chain_i(w_k[i]·x[i]) + b[k]`, each dot product adding its inputs in order from +0.0
/// with fused multiply-adds, then the bias. Lane k of a group reads the row that starts at
/// byte address `w + offsets[k] + 4` (the caller's `offsets` are `k·inputs·4 − 4`, or an
/// in-bounds row for padding lanes); each next group starts `8·inputs` floats further, and
/// its eight biases and outputs follow the previous group's. Per 32 inputs eight `ldm` of x
/// and 64 gathers and fused multiply-adds (one gather and one `vfma` for four multiply-adds),
/// then one input at a time. Returns how many groups it stored: nothing if FPSCR's flush flags are
/// set at the start, and it stops before storing a group whose computation set them (see
/// the module's doc).
///
/// # Safety
/// For every group g < `groups` and lane k, `w + 8·g·inputs·4 + offsets[k] + 4` must be
/// valid for reads of `inputs` f32; `x` for reads of `inputs` f32, `offsets` of eight, `b`
/// of `8·groups`, and `z` for writes of `8·groups` f32 that overlap nothing read; all of
/// them 4-byte aligned; `inputs·32` must not overflow.
#[inline(always)]
unsafe fn forward_groups8(
    w: *const f32,
    offsets: *const u32,
    x: *const f32,
    inputs: usize,
    b: *const f32,
    z: *mut f32,
    groups: usize,
) -> usize {
    let remaining: usize;
    // SAFETY: the caller guarantees the reads and writes (see above): the gathers read
    // each lane's own row, `inputs` weights (q0/q1 start 4 bytes before the rows and advance
    // by 4 per input), the `ldm`s and `ldr`s read x[0..inputs] (rewound after each group),
    // b and z advance by eight f32 per group. The loops are `wls`/`le` loops (which skip a
    // zero count) and the group loop runs `groups` ≥ 1 times (checked by the caller). The
    // registers written are declared: q0-q7 and lr by `mve_asm!`, r0-r3 as outputs, the
    // pointers and the count as inout. `vmrs` only reads FPSCR.
    unsafe {
        mve_asm!(
            "vldrw.u32 q6, [r0]",
            "vldrw.u32 q7, [r0, #16]",
            // (Checked once here; each group's check before its stores covers the next.)
            "vmrs r0, fpscr",
            "ands r0, r0, #0x88",
            "bne 9f",
            "3:",
            "vadd.i32 q0, q6, {w}",
            "vadd.i32 q1, q7, {w}",
            "vmov.i32 q2, #0",
            "vmov.i32 q3, #0",
            "lsrs r0, {n}, #5",
            "wls lr, r0, 5f",
            "4:",
            forward_16!(),
            forward_16!(),
            "le lr, 4b",
            "5:",
            "and r0, {n}, #31",
            "wls lr, r0, 7f",
            "6:",
            "ldr r0, [{x}], #4",
            forward_step!("r0"),
            "le lr, 6b",
            "7:",
            "vldrw.u32 q4, [{b}], #16",
            "vldrw.u32 q5, [{b}], #16",
            "vadd.f32 q2, q2, q4",
            "vadd.f32 q3, q3, q5",
            "vmrs r0, fpscr",
            "ands r0, r0, #0x88",
            "bne 9f",
            "vstrw.32 q2, [{z}], #16",
            "vstrw.32 q3, [{z}], #16",
            "sub {x}, {x}, {n}, lsl #2",
            "add {w}, {w}, {n}, lsl #5",
            "subs {m}, {m}, #1",
            "bne 3b",
            "9:",
            w = inout(reg) w => _,
            n = in(reg) inputs,
            x = inout(reg) x => _,
            b = inout(reg) b => _,
            z = inout(reg) z => _,
            m = inout(reg) groups => remaining,
            inout("r0") offsets => _,
            out("r1") _,
            out("r2") _,
            out("r3") _,
        );
    }
    groups - remaining
}

/// One sample of a dense forward, `z[o] = (Σ_i w[o][i]·x[i]) + b[o]` for every output
/// (`z.len()`, at most `b.len()`), `w` row-major with rows of `inputs`, each dot product
/// fused in input order (see [`forward_groups8`]): eight outputs per group, the last group
/// padded with copies of its first row whose results are dropped. Returns `false` if the
/// slices do not fit the shapes or a group met a flush (see the module's doc): the caller
/// then computes the sample exactly (`z` may hold some groups' results).
#[inline(always)]
pub(crate) fn dense_forward_sample(
    w: &[f32],
    b: &[f32],
    x: &[f32],
    z: &mut [f32],
    inputs: usize,
) -> bool {
    let outputs = z.len();
    let Some(stride) = inputs
        .checked_mul(4)
        .filter(|&s| s <= (u32::MAX as usize) / 8)
    else {
        return false;
    };
    let fits = outputs > 0
        && inputs > 0
        && b.len() >= outputs
        && x.len() >= inputs
        && outputs.checked_mul(inputs).is_some_and(|n| w.len() >= n);
    if !fits {
        return false;
    }
    let groups = outputs / 8;
    if groups > 0 {
        // (Written out: a loop here cost a fifth of a 64×64 forward's overhead.)
        let s = stride as u32;
        let offsets: [u32; 8] = [
            0u32.wrapping_sub(4),
            s - 4,
            2 * s - 4,
            3 * s - 4,
            4 * s - 4,
            5 * s - 4,
            6 * s - 4,
            7 * s - 4,
        ];
        // SAFETY: rows 0..8·groups exist (8·groups ≤ outputs and w holds outputs·inputs
        // values), so every lane of every group reads its own row's `inputs` weights; x holds
        // `inputs` values, b and z at least 8·groups; `z` is borrowed mutably (overlaps
        // nothing read); stride·8 fits a u32 (checked), so inputs·32 does not overflow.
        let stored = unsafe {
            forward_groups8(
                w.as_ptr(),
                offsets.as_ptr(),
                x.as_ptr(),
                inputs,
                b.as_ptr(),
                z.as_mut_ptr(),
                groups,
            )
        };
        if stored != groups {
            return false;
        }
    }
    let row = groups * 8;
    let rest = outputs - row;
    if rest > 0 {
        // The last rows, and row `row` again in the padding lanes.
        let offsets: [u32; 8] = core::array::from_fn(|k| {
            let k = if k < rest { k } else { 0 };
            ((k * stride) as u32).wrapping_sub(4)
        });
        let mut bias = [0.0f32; 8];
        for (d, &v) in bias.iter_mut().zip(b.get(row..outputs).unwrap_or(&[])) {
            *d = v;
        }
        let mut out = [0.0f32; 8];
        // SAFETY: rows row..outputs exist, and the padding lanes read row `row` (rest ≥ 1);
        // x holds `inputs` values; `bias`, `out` and `offsets` are local arrays of eight;
        // one group.
        let stored = unsafe {
            forward_groups8(
                w.as_ptr().add(row * inputs),
                offsets.as_ptr(),
                x.as_ptr(),
                inputs,
                bias.as_ptr(),
                out.as_mut_ptr(),
                1,
            )
        };
        if stored != 1 {
            return false;
        }
        for (d, &v) in z.get_mut(row..).unwrap_or(&mut []).iter_mut().zip(&out) {
            *d = v;
        }
    }
    true
}

/// [`super::cortex_m::outer_block_2x8`] with fused multiply-adds: `dw0[k] (+)= Σ_s
/// g[s·g_stride]·x[s·x_stride + k]`, `dw1[k] (+)= Σ_s g[s·g_stride + 1]·x[s·x_stride + k]`
/// for k < 8, the samples in order, each step one `vfma.f32` (per sample two loads of x, one
/// `ldrd` of the two gradients, four `vfma`). With `from_zero` the sums start at +0.0.
/// Returns `false`, touching nothing, if a slice is too short, `samples` is 0 or FPSCR's
/// flush flags are set before or after the computation (the caller then runs the VFP block).
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
    if !super::cortex_m::outer_block_fits(dw0, dw1, g, g_stride, x, x_stride, samples) {
        return false;
    }
    let (start0, start1) = if from_zero {
        (ZEROS.as_ptr(), ZEROS.as_ptr())
    } else {
        (dw0.as_ptr(), dw1.as_ptr())
    };
    // SAFETY: `dw0` and `dw1` hold eight f32 each and are the only memory written (two
    // distinct mutable borrows); the start values come from them or from `ZEROS`; for every
    // s < `samples` the reads g[s·g_stride..+2] and x[s·x_stride..+8] lie inside the slices
    // (checked above without overflow). `samples` ≥ 1 and the `wls`/`le` loop skips zero
    // anyway. Registers written: q0-q7 and lr (`mve_asm!`), r0, r1 and the flags (outputs),
    // the pointers (inout). `vmrs` only reads FPSCR.
    let flags: u32;
    unsafe {
        mve_asm!(
            "vmrs {t}, fpscr",
            "ands {t}, {t}, #0x88",
            "bne 9f",
            "vldrw.u32 q0, [{a0}]",
            "vldrw.u32 q1, [{a0}, #16]",
            "vldrw.u32 q2, [{a1}]",
            "vldrw.u32 q3, [{a1}, #16]",
            "wls lr, {n}, 3f",
            "2:",
            "vldrw.u32 q4, [{px}]",
            "vldrw.u32 q5, [{px}, #16]",
            "add {px}, {px}, {sx}",
            "ldrd r0, r1, [{pg}]",
            "add {pg}, {pg}, {sg}",
            "vfma.f32 q0, q4, r0",
            "vfma.f32 q1, q5, r0",
            "vfma.f32 q2, q4, r1",
            "vfma.f32 q3, q5, r1",
            "le lr, 2b",
            "3:",
            "vmrs {t}, fpscr",
            "ands {t}, {t}, #0x88",
            "bne 9f",
            "vstrw.32 q0, [{d0}]",
            "vstrw.32 q1, [{d0}, #16]",
            "vstrw.32 q2, [{d1}]",
            "vstrw.32 q3, [{d1}, #16]",
            "9:",
            t = out(reg) flags,
            a0 = in(reg) start0,
            a1 = in(reg) start1,
            d0 = in(reg) dw0.as_mut_ptr(),
            d1 = in(reg) dw1.as_mut_ptr(),
            px = inout(reg) x.as_ptr() => _,
            pg = inout(reg) g.as_ptr() => _,
            sx = in(reg) x_stride * 4,
            sg = in(reg) g_stride * 4,
            n = in(reg) samples,
            out("r0") _,
            out("r1") _,
        );
    }
    flags == 0
}

/// [`super::cortex_m::axpy_rows_2x8`] with fused multiply-adds: `dx[k] += Σ_{r < 2·pairs}
/// g[r]·w[r·stride + k]` for k < 8, the rows in order (per pair of rows one `ldrd` of the
/// gradients, four loads of weights, four `vfma`). With `from_zero` the sums start at +0.0.
/// Returns `false`, touching nothing, if a slice is too short, `pairs` is 0 or FPSCR's flush
/// flags are set before or after the computation (the caller then runs the VFP block).
#[inline(always)]
pub(crate) fn axpy_rows_2x8(
    dx: &mut [f32],
    from_zero: bool,
    g: &[f32],
    w: &[f32],
    stride: usize,
    pairs: usize,
) -> bool {
    if !super::cortex_m::axpy_rows_fit(dx, g, w, stride, pairs) {
        return false;
    }
    let start = if from_zero {
        ZEROS.as_ptr()
    } else {
        dx.as_ptr()
    };
    // SAFETY: `dx` holds eight f32 and is the only memory written (borrowed mutably); the
    // start values come from it or from `ZEROS`; the reads g[0..2·pairs] and
    // w[r·stride..+8] for r < 2·pairs lie inside the slices (checked above, without
    // overflow). The `wls`/`le` loop runs `pairs` ≥ 1 times. Registers written: q0-q7 and
    // lr (`mve_asm!`), r0, r1 and the flags (outputs), the pointers (inout). `vmrs` only
    // reads FPSCR.
    let flags: u32;
    unsafe {
        mve_asm!(
            "vmrs {t}, fpscr",
            "ands {t}, {t}, #0x88",
            "bne 9f",
            "vldrw.u32 q0, [{start}]",
            "vldrw.u32 q1, [{start}, #16]",
            "wls lr, {n}, 3f",
            "2:",
            "ldrd r0, r1, [{pg}], #8",
            "vldrw.u32 q2, [{pw}]",
            "vldrw.u32 q3, [{pw}, #16]",
            "add {pw}, {pw}, {sw}",
            "vldrw.u32 q4, [{pw}]",
            "vldrw.u32 q5, [{pw}, #16]",
            "add {pw}, {pw}, {sw}",
            "vfma.f32 q0, q2, r0",
            "vfma.f32 q1, q3, r0",
            "vfma.f32 q0, q4, r1",
            "vfma.f32 q1, q5, r1",
            "le lr, 2b",
            "3:",
            "vmrs {t}, fpscr",
            "ands {t}, {t}, #0x88",
            "bne 9f",
            "vstrw.32 q0, [{pd}]",
            "vstrw.32 q1, [{pd}, #16]",
            "9:",
            t = out(reg) flags,
            start = in(reg) start,
            pd = in(reg) dx.as_mut_ptr(),
            pg = inout(reg) g.as_ptr() => _,
            pw = inout(reg) w.as_ptr() => _,
            sw = in(reg) stride * 4,
            n = in(reg) pairs,
            out("r0") _,
            out("r1") _,
        );
    }
    flags == 0
}

/// Constants of the ReLU kernels, one q register each: |x| mask, the sign bit, ones, the
/// default NaN.
static RELU_CONSTANTS: [u32; 16] = [
    0x7FFF_FFFF,
    0x7FFF_FFFF,
    0x7FFF_FFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0x8000_0000,
    0x8000_0000,
    0x8000_0000,
    1,
    1,
    1,
    1,
    0x7FC0_0000,
    0x7FC0_0000,
    0x7FC0_0000,
    0x7FC0_0000,
];

/// ReLU over the whole blocks of four of `z` into `out` (over their common length), in
/// **integer** MVE code, so nothing is flushed: `Relu::value_lanes` is `select(x ≤ 0, +0,
/// x)`, and x ≤ 0 (not NaN) holds exactly for the bit patterns u with
/// `u ⊕ 0x8000_0000 ≤ 0x7F80_0000` (−0 … −∞; +0 maps to itself, which the select's +0.0
/// equals). Per four values: `veor`, a saturating subtract of the limit (0 exactly where
/// the value goes), `vmin` with 1 and `vneg` (a mask of ones where it stays), `vand`; no
/// predicates (stable `asm!` cannot declare VPR clobbered). Returns how many values it
/// wrote (a multiple of 4).
#[inline(always)]
pub(crate) fn relu_forward_blocks(z: &[f32], out: &mut [f32]) -> usize {
    let blocks = z.len().min(out.len()) / 4;
    if blocks == 0 {
        return 0;
    }
    // SAFETY: `z` and `out` hold at least `4·blocks` f32 each and `RELU_CONSTANTS` 16 u32;
    // `out` is the only memory written and is borrowed mutably (so it overlaps nothing
    // read). The loop is a `wls`/`le` loop of `blocks` iterations. Registers written: q0-q7
    // and lr (declared by `mve_asm!`) and the pointers (inout). Integer vector operations
    // only: no floating-point flag or mode is read or changed.
    unsafe {
        mve_asm!(
            "vldrw.u32 q5, [{k}, #16]",
            "vldrw.u32 q6, [{k}, #32]",
            "wls lr, {n}, 3f",
            "2:",
            "vldrw.u32 q0, [{pz}], #16",
            "veor q1, q0, q5",
            "vqsub.u32 q1, q1, {limit}",
            "vmin.u32 q1, q1, q6",
            "vneg.s32 q1, q1",
            "vand q0, q0, q1",
            "vstrw.32 q0, [{pa}], #16",
            "le lr, 2b",
            "3:",
            k = in(reg) RELU_CONSTANTS.as_ptr(),
            limit = in(reg) 0x7F80_0000u32,
            n = in(reg) blocks,
            pz = inout(reg) z.as_ptr() => _,
            pa = inout(reg) out.as_mut_ptr() => _,
        );
    }
    blocks * 4
}

/// ReLU's backward over the whole blocks of four (over the common length) in **integer**
/// MVE code, the bits of the generic kernel's `dy · f'(z)` with f'(z) = 1 for z > 0, +0 for
/// z ≤ 0 and z for a NaN z (NaN payloads aside):
/// * 0 < z ≤ +∞ (bit patterns 1 … 0x7F80_0000): dy · 1 = dy, unchanged (a subnormal too);
/// * z NaN, or z ≤ 0 with dy = ±∞ or NaN: NaN;
/// * otherwise dy · (+0) = ±0 with dy's sign.
///
/// Per four values 16 integer operations (saturating subtracts against limits give 0
/// exactly where a condition fails; `vmin` with 1 and `vneg` turn the rest into masks);
/// nothing is flushed. Out of line, like the VFP version: one copy serves the tracked and
/// the untracked backward. Returns how many values it wrote (a multiple of 4).
#[inline(never)]
pub(crate) fn relu_backward_blocks(z: &[f32], dy: &[f32], dz: &mut [f32]) -> usize {
    let blocks = z.len().min(dy.len()).min(dz.len()) / 4;
    if blocks == 0 {
        return 0;
    }
    // SAFETY: `z`, `dy` and `dz` hold at least `4·blocks` f32 each and `RELU_CONSTANTS` 16
    // u32; `dz` is the only memory written and is borrowed mutably (so it overlaps nothing
    // read). The loop is a `wls`/`le` loop of `blocks` iterations. Registers written: q0-q7
    // and lr (declared by `mve_asm!`) and the pointers (inout). Integer vector operations
    // only: no floating-point flag or mode is read or changed.
    unsafe {
        mve_asm!(
            "vldrw.u32 q4, [{k}]",
            "vldrw.u32 q5, [{k}, #16]",
            "vldrw.u32 q6, [{k}, #32]",
            "vldrw.u32 q7, [{k}, #48]",
            "wls lr, {n}, 3f",
            "2:",
            "vldrw.u32 q0, [{pz}], #16",
            "vldrw.u32 q1, [{py}], #16",
            // q2 = ones where z is not in 1 … 0x7F80_0000 (f'(z) is not 1).
            "vsub.i32 q2, q0, {one}",
            "vqsub.u32 q2, q2, {below_inf}",
            "vmin.u32 q2, q2, q6",
            "vneg.s32 q2, q2",
            // q0 = nonzero where z is NaN; q3 = nonzero where dy is ±∞ or NaN.
            "vand q0, q0, q4",
            "vqsub.u32 q0, q0, {inf}",
            "vand q3, q1, q4",
            "vqsub.u32 q3, q3, {below_inf}",
            "vorr q0, q0, q3",
            // q0 = the default NaN where either, else +0; then dy's sign: the z ≤ 0 result.
            "vmin.u32 q0, q0, q6",
            "vneg.s32 q0, q0",
            "vand q0, q0, q7",
            "vand q3, q1, q5",
            "vorr q0, q0, q3",
            // dy where f'(z) = 1, the z ≤ 0 result elsewhere.
            "vbic q1, q1, q2",
            "vand q0, q0, q2",
            "vorr q1, q1, q0",
            "vstrw.32 q1, [{pd}], #16",
            "le lr, 2b",
            "3:",
            k = in(reg) RELU_CONSTANTS.as_ptr(),
            one = in(reg) 1u32,
            below_inf = in(reg) 0x7F7F_FFFFu32,
            inf = in(reg) 0x7F80_0000u32,
            n = in(reg) blocks,
            pz = inout(reg) z.as_ptr() => _,
            py = inout(reg) dy.as_ptr() => _,
            pd = inout(reg) dz.as_mut_ptr() => _,
        );
    }
    blocks * 4
}
