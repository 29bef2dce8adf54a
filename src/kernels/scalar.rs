//! Portable scalar matrix kernels: the reference implementation and the microcontroller path.
//!
//! These are the [`Backend::Scalar`](super::Backend::Scalar) dense kernels, written as plain
//! loops so they are easy to check; every SIMD backend is tested against them. (The scalar
//! elementwise kernels are the generic bodies of `kernels::generic` at `f32`.)
//!
//! The order of every floating-point operation here is part of the contract (documented per
//! function), because other backends are tested against it. No fused multiply-add is used:
//! `libm::fmaf` is software on Cortex-M4 (≈ 280 instructions a call), and `a * b + c` rounds
//! twice on every target alike.

use super::GradMode;

/// Dense forward for a batch: `z[s][o] = (Σ_i w[o][i]·x[s][i]) + b[o]`.
///
/// Order: the dot product is summed from `i = 0` upwards starting at +0.0, then the bias is
/// added. Weights are `OUT × IN` row-major.
#[inline]
pub fn dense_forward<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    b: &[f32; OUT],
    x: &[[f32; IN]; B],
    z: &mut [[f32; OUT]; B],
) {
    for (xs, zs) in x.iter().zip(z.iter_mut()) {
        // Cortex-M with Helium (MVE): the whole sample in MVE code, eight rows at a time,
        // each dot product in input order with fused multiply-adds.
        #[cfg(gradguard_mve)]
        if super::helium::dense_forward_sample(w.as_flattened(), b, xs, zs, IN) {
            continue;
        }
        // Cortex-M with an FPU: the whole sample in hand-scheduled VFP code, when the shape
        // allows (IN a multiple of 16, OUT even); same operations in the same order.
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        if OUT.is_multiple_of(2)
            && super::cortex_m::dense_rows(w.as_flattened(), b, xs, zs, IN, OUT / 2)
        {
            continue;
        }
        // Two output rows at a time share each load of x, inputs eight at a time so
        // adjacent loads can merge (vldm on Cortex-M). Every accumulator still adds its
        // products in input order, so the result is that of the plain loop, bit for bit.
        let pairs = (w.as_chunks::<2>().0.iter())
            .zip(b.as_chunks::<2>().0)
            .zip(zs.as_chunks_mut::<2>().0);
        for (([w0, w1], [b0, b1]), [z0, z1]) in pairs {
            let (a0, a1) = dot2(w0, w1, xs);
            *z0 = a0 + b0;
            *z1 = a1 + b1;
        }
        if OUT % 2 == 1 {
            if let (Some(wo), Some(bo), Some(zo)) = (w.last(), b.last(), zs.last_mut()) {
                let (a, _) = dot2(wo, wo, xs);
                *zo = a + bo;
            }
        }
    }
}

/// Σ_i w0[i]·x[i] and Σ_i w1[i]·x[i], each summed from i = 0 upwards starting at +0.0.
/// On a Cortex-M with an FPU the blocks of eight run as hand-scheduled VFP code
/// (`kernels::cortex_m`), with the same operations in the same order.
#[inline(always)]
fn dot2<const IN: usize>(w0: &[f32; IN], w1: &[f32; IN], x: &[f32; IN]) -> (f32, f32) {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let (mut a0, mut a1) = super::cortex_m::dot2_blocks(w0, w1, x, IN / 8);
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    let (mut a0, mut a1) = {
        let (mut a0, mut a1) = (0.0f32, 0.0f32);
        let blocks = (w0.as_chunks::<8>().0.iter())
            .zip(w1.as_chunks::<8>().0)
            .zip(x.as_chunks::<8>().0);
        for ((c0, c1), cx) in blocks {
            for ((&p, &q), &v) in c0.iter().zip(c1.iter()).zip(cx.iter()) {
                a0 += p * v;
                a1 += q * v;
            }
        }
        (a0, a1)
    };
    let tail = IN - IN % 8;
    for ((&p, &q), &v) in w0[tail..]
        .iter()
        .zip(w1[tail..].iter())
        .zip(x[tail..].iter())
    {
        a0 += p * v;
        a1 += q * v;
    }
    (a0, a1)
}

/// `y[k] += a·x[k]` for `k ≥ from` (one rounding for the product, one for the sum).
#[inline(always)]
fn axpy_from<const N: usize>(y: &mut [f32; N], a: f32, x: &[f32; N], from: usize) {
    let (y, x) = (
        y.get_mut(from..).unwrap_or(&mut []),
        x.get(from..).unwrap_or(&[]),
    );
    for (d, xi) in y.iter_mut().zip(x.iter()) {
        *d += a * xi;
    }
}

/// Dense backward to the input: `dx[s][i] = Σ_o dz[s][o]·w[o][i]` (always overwrites `dx`).
///
/// Order: for each sample, `dx` starts at +0.0 and rows of `w` are added for `o = 0, 1, …`.
#[inline]
pub fn dense_backward_input<const IN: usize, const OUT: usize, const B: usize>(
    w: &[[f32; IN]; OUT],
    dz: &[[f32; OUT]; B],
    dx: &mut [[f32; IN]; B],
) {
    for (dzs, dxs) in dz.iter().zip(dx.iter_mut()) {
        // Cortex-M with an FPU: the whole blocks of eight columns in VFP code, their sums
        // started at +0.0 in registers, the same operations in the same order; the portable
        // loop does the columns after them.
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        let done = super::cortex_m::input_gradient_blocks(w.as_flattened(), dzs, dxs, true, IN);
        #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
        let done = 0;
        if done < IN {
            dxs.get_mut(done..).unwrap_or(&mut []).fill(0.0);
            for (wo, &g) in w.iter().zip(dzs.iter()) {
                axpy_from(dxs, g, wo, done);
            }
        }
    }
}

/// Dense backward to the parameters: `dw[o][i] (+)= Σ_s dz[s][o]·x[s][i]`,
/// `db[o] (+)= Σ_s dz[s][o]`.
///
/// Order: with [`GradMode::Overwrite`] both start at +0.0; samples are added for
/// `s = 0, 1, …`.
#[inline]
pub fn dense_backward_params<const IN: usize, const OUT: usize, const B: usize>(
    dz: &[[f32; OUT]; B],
    x: &[[f32; IN]; B],
    dw: &mut [[f32; IN]; OUT],
    db: &mut [f32; OUT],
    mode: GradMode,
) {
    let overwrite = mode == GradMode::Overwrite;
    if overwrite {
        *db = [0.0; OUT];
    }
    // Cortex-M with an FPU: whole blocks of eight columns of pairs of rows in VFP code (sums
    // started at +0.0 in registers when overwriting), the same operations in the same order
    // for every element; the portable loop does the rest.
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let (rows_done, done) = {
        let (dz, x, dw) = (dz.as_flattened(), x.as_flattened(), dw.as_flattened_mut());
        super::cortex_m::weight_gradient_blocks(dz, x, dw, overwrite, IN, OUT)
    };
    #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
    let (rows_done, done) = (0, 0);
    if overwrite && (rows_done < OUT || done < IN) {
        for (o, dwo) in dw.iter_mut().enumerate() {
            let from = if o < rows_done { done } else { 0 };
            dwo.get_mut(from..).unwrap_or(&mut []).fill(0.0);
        }
    }
    for (dzs, xs) in dz.iter().zip(x.iter()) {
        for (dbo, &g) in db.iter_mut().zip(dzs.iter()) {
            *dbo += g;
        }
        if rows_done < OUT || done < IN {
            for (o, (dwo, &g)) in dw.iter_mut().zip(dzs.iter()).enumerate() {
                axpy_from(dwo, g, xs, if o < rows_done { done } else { 0 });
            }
        }
    }
}

/// Plain SGD, `w −= lr · (g + λ·w)`: on Cortex-M with an FPU blocks of eight in VFP code
/// (the same two non-fused operations per weight), the rest by the portable body.
#[inline]
pub fn sgd_update(w: &mut [f32], g: &[f32], lr: f32, weight_decay: f32) {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let (w, g) = {
        let done = super::cortex_m::sgd_blocks(w, g, lr, weight_decay);
        (
            w.get_mut(done..).unwrap_or(&mut []),
            g.get(done..).unwrap_or(&[]),
        )
    };
    super::generic::sgd_update::<f32>(w, g, lr, weight_decay);
}

/// SGD with momentum, `v = μ·v + (g + λ·w)`, `w −= lr·v`: on Cortex-M with an FPU blocks of
/// eight in VFP code (the same non-fused operations in the same order), the rest by the
/// portable body.
#[inline]
pub fn sgd_momentum_update(
    w: &mut [f32],
    g: &[f32],
    velocity: &mut [f32],
    lr: f32,
    mu: f32,
    weight_decay: f32,
) {
    #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
    let (w, g, velocity) = {
        let done = super::cortex_m::momentum_blocks(w, g, velocity, lr, mu, weight_decay);
        (
            w.get_mut(done..).unwrap_or(&mut []),
            g.get(done..).unwrap_or(&[]),
            velocity.get_mut(done..).unwrap_or(&mut []),
        )
    };
    super::generic::sgd_momentum_update::<f32>(w, g, velocity, lr, mu, weight_decay);
}

#[cfg(test)]
mod tests {
    use super::{dense_backward_input, dense_backward_params, dense_forward};
    use crate::kernels::GradMode;

    #[test]
    fn small_cases_give_the_documented_sums() {
        let mut z = [[0.0; 1]; 2];
        dense_forward(&[[2.0, -1.0]], &[1.0], &[[1.0, 1.0], [0.0, 3.0]], &mut z);
        assert_eq!(z, [[2.0], [-2.0]]);
        let mut dx = [[9.0; 2]];
        dense_backward_input(&[[1.0, 2.0], [3.0, 4.0]], &[[1.0, -1.0]], &mut dx);
        assert_eq!(dx, [[-2.0, -2.0]]);
        let (mut dw, mut db) = ([[0.0; 2]; 1], [0.0; 1]);
        let (dz, x) = ([[2.0], [1.0]], [[1.0, 0.5], [4.0, 0.0]]);
        dense_backward_params(&dz, &x, &mut dw, &mut db, GradMode::Overwrite);
        assert_eq!((dw, db), ([[6.0, 1.0]], [3.0]));
    }
}
