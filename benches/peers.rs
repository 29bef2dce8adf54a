//! gradguard against the general-purpose Rust peers on the same shapes, in the same run.
//!
//! `cargo bench --features bench-peers --bench peers` (single-threaded, default build flags: gradguard picks its
//! backend at run time; `GRADGUARD_BACKEND=sse2 cargo bench …` pins one). Peers:
//! a naive loop, nalgebra fixed-size `SMatrix`, ndarray (`general_mat_mul`),
//! matrixmultiply (`sgemm`) and gemm 0.19 with its AVX-512 kernels (`x86-v4`), without
//! threads. Every peer writes into preallocated buffers, as gradguard does.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gradguard::init::Init;
use gradguard::kernels;
use gradguard::{
    train_step, Dense, GradMode, Layer, Relu, Seq, Sgd, Sigmoid, SoftmaxCrossEntropy, Trainer,
    Workspace, Zeroed,
};
use nalgebra::SMatrix;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, Axis};
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::hint::black_box;

const BATCH: usize = 32;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        .collect()
}

/// A value on a cache line's boundary (64 bytes), as gradguard's own storage types
/// (`DenseParams`, the caches) are on hosts: every matrix of the kernel benchmarks, ours and
/// the peers' alike, lives in one, as the weights and activations of a network would.
#[repr(C, align(64))]
struct Aligned<T>(T);

impl<T> std::ops::Deref for Aligned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// `R` rows of `C` values from `v`, cache-line aligned.
fn boxed<const C: usize, const R: usize>(v: &[f32]) -> Box<Aligned<[[f32; C]; R]>> {
    let mut m = zeros::<C, R>();
    m.as_flattened_mut().copy_from_slice(&v[..C * R]);
    m
}

/// `R` rows of `C` zeros, cache-line aligned.
fn zeros<const C: usize, const R: usize>() -> Box<Aligned<[[f32; C]; R]>> {
    Box::new(Aligned([[0.0; C]; R]))
}

/// `dst (m×n) = lhs (m×k) · rhs (k×n)` with gemm, strides in elements, no threads.
#[allow(clippy::too_many_arguments)]
fn gemm_call(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    (dst_rs, dst_cs): (isize, isize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (isize, isize),
    read_dst: bool,
) {
    // SAFETY: every index the strides reach is inside the slices (checked by the callers'
    // shapes); gemm writes only dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            read_dst,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Dense forward, batch 32: Z = X·Wᵀ + b.
fn dense_forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_forward_batch32");
    macro_rules! shape {
        ($in:literal, $out:literal) => {{
            const IN: usize = $in;
            const OUT: usize = $out;
            let id = concat!($in, "x", $out);
            let (wv, bv, xv) = (random(IN * OUT, 1), random(OUT, 2), random(IN * BATCH, 3));
            let (w, x) = (boxed::<IN, OUT>(&wv), boxed::<IN, BATCH>(&xv));
            let b: [f32; OUT] = core::array::from_fn(|k| bv[k]);
            let mut z = zeros::<OUT, BATCH>();
            group.throughput(Throughput::Elements((IN * OUT * BATCH) as u64));
            group.bench_function(BenchmarkId::new("gradguard", id), |bch| {
                bch.iter(|| kernels::dense_forward(&w, &b, black_box(&x), &mut z))
            });
            group.bench_function(BenchmarkId::new("naive_loop", id), |bch| {
                bch.iter(|| {
                    for (xs, zs) in black_box(&x).iter().zip(z.iter_mut()) {
                        for ((wo, &bo), zo) in w.iter().zip(b.iter()).zip(zs.iter_mut()) {
                            let mut t = 0.0;
                            for (&wi, &xi) in wo.iter().zip(xs.iter()) {
                                t += wi * xi;
                            }
                            *zo = t + bo;
                        }
                    }
                })
            });
            let bias_rows: Vec<f32> = (0..BATCH).flat_map(|_| b.iter().copied()).collect();
            let mut zf = vec![0.0f32; BATCH * OUT];
            group.bench_function(BenchmarkId::new("gemm", id), |bch| {
                bch.iter(|| {
                    zf.copy_from_slice(&bias_rows);
                    gemm_call(
                        BATCH,
                        OUT,
                        IN,
                        &mut zf,
                        (OUT as isize, 1),
                        black_box(x.as_flattened()),
                        (IN as isize, 1),
                        w.as_flattened(),
                        (1, IN as isize),
                        true,
                    )
                })
            });
            group.bench_function(BenchmarkId::new("matrixmultiply", id), |bch| {
                bch.iter(|| {
                    zf.copy_from_slice(&bias_rows);
                    // SAFETY: the strides describe the boxed arrays exactly.
                    unsafe {
                        matrixmultiply::sgemm(
                            BATCH,
                            IN,
                            OUT,
                            1.0,
                            black_box(x.as_flattened()).as_ptr(),
                            IN as isize,
                            1,
                            w.as_flattened().as_ptr(),
                            1,
                            IN as isize,
                            1.0,
                            zf.as_mut_ptr(),
                            OUT as isize,
                            1,
                        )
                    }
                })
            });
            let xa = Array2::from_shape_vec((BATCH, IN), xv.clone()).unwrap();
            let wa = Array2::from_shape_vec((OUT, IN), wv.clone()).unwrap();
            let ba = Array1::from_vec(b.to_vec());
            let mut za = Array2::<f32>::zeros((BATCH, OUT));
            group.bench_function(BenchmarkId::new("ndarray", id), |bch| {
                bch.iter(|| {
                    za.assign(&ba.broadcast((BATCH, OUT)).unwrap());
                    general_mat_mul(1.0, black_box(&xa), &wa.t(), 1.0, &mut za);
                })
            });
            // nalgebra is column-major: Zᵀ (OUT×B) = W (OUT×IN) · Xᵀ (IN×B).
            let wn = Box::new(SMatrix::<f32, OUT, IN>::from_row_slice(&wv));
            let xn = Box::new(SMatrix::<f32, IN, BATCH>::from_column_slice(&xv));
            let bn = SMatrix::<f32, OUT, 1>::from_column_slice(&b);
            let mut zn = Box::new(SMatrix::<f32, OUT, BATCH>::zeros());
            group.bench_function(BenchmarkId::new("nalgebra", id), |bch| {
                bch.iter(|| {
                    wn.mul_to(black_box(&*xn), &mut *zn);
                    for mut col in zn.column_iter_mut() {
                        col += &bn;
                    }
                })
            });
        }};
    }
    shape!(64, 64);
    shape!(128, 128);
    shape!(784, 128);
    group.finish();
}

/// Dense forward, batch 1, 128×128, against an auto-vectorised axpy loop over Wᵀ.
fn dense_forward_single(c: &mut Criterion) {
    const N: usize = 128;
    let mut group = c.benchmark_group("dense_forward_batch1_128x128");
    let (wv, bv, xv) = (random(N * N, 4), random(N, 5), random(N, 6));
    let w = boxed::<N, N>(&wv);
    let b: [f32; N] = core::array::from_fn(|k| bv[k]);
    let x = boxed::<N, 1>(&xv);
    let mut z = zeros::<N, 1>();
    group.throughput(Throughput::Elements((N * N) as u64));
    group.bench_function("gradguard", |bch| {
        bch.iter(|| kernels::dense_forward(&w, &b, black_box(&x), &mut z))
    });
    // Wᵀ, so that z = b + Σ_i x[i]·Wᵀ[i] is a vectorisable axpy per input.
    let mut wt = zeros::<N, N>();
    for (o, row) in w.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            wt[i][o] = v;
        }
    }
    group.bench_function("axpy_loop", |bch| {
        bch.iter(|| {
            let mut acc = b;
            for (&xi, col) in black_box(&x[0]).iter().zip(wt.iter()) {
                for (a, &v) in acc.iter_mut().zip(col.iter()) {
                    *a += xi * v;
                }
            }
            z[0] = acc;
        })
    });
    group.finish();
}

/// What alignment costs: the batch-1 dX = dz·W of 128×128 with W on a cache line's boundary
/// (as in `DenseParams` on hosts) and 16 bytes past it (as a `Box<[[f32; 128]; 128]>` from
/// the allocator may be), same values.
fn alignment(c: &mut Criterion) {
    const N: usize = 128;
    let mut group = c.benchmark_group("alignment_dx_batch1_128x128");
    let (wv, dzv) = (random(N * N, 4), random(N, 5));
    let mut storage = zeros::<N, { N + 1 }>();
    let dz = boxed::<N, 1>(&dzv);
    let mut dx = zeros::<N, 1>();
    group.throughput(Throughput::Elements((N * N) as u64));
    for (name, offset) in [("w_aligned", 0), ("w_16_bytes_off", 4)] {
        let flat = &mut storage.as_flattened_mut()[offset..offset + N * N];
        flat.copy_from_slice(&wv);
        let w: &[[f32; N]; N] = flat.as_chunks::<N>().0.try_into().expect("N rows");
        group.bench_function(name, |bch| {
            bch.iter(|| kernels::dense_backward_input(black_box(w), &dz, &mut dx))
        });
    }
    group.finish();
}

/// The backward matrix products at batch 32: dX = dZ·W and dW = dZᵀ·X (+ db).
fn dense_backward(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_backward_batch32");
    macro_rules! shape {
        ($n:literal) => {{
            const N: usize = $n;
            let id = concat!($n, "x", $n);
            let (wv, dzv, xv) = (random(N * N, 7), random(N * BATCH, 8), random(N * BATCH, 9));
            let (w, dz, x) = (
                boxed::<N, N>(&wv),
                boxed::<N, BATCH>(&dzv),
                boxed::<N, BATCH>(&xv),
            );
            let mut dx = zeros::<N, BATCH>();
            let (mut dw, mut db) = (zeros::<N, N>(), [0.0f32; N]);
            group.throughput(Throughput::Elements((N * N * BATCH) as u64));
            group.bench_function(BenchmarkId::new("gradguard_dx", id), |bch| {
                bch.iter(|| kernels::dense_backward_input(&w, black_box(&dz), &mut dx))
            });
            group.bench_function(BenchmarkId::new("gradguard_dw_db", id), |bch| {
                bch.iter(|| {
                    kernels::dense_backward_params(
                        black_box(&dz),
                        &x,
                        &mut dw,
                        &mut db,
                        GradMode::Overwrite,
                    )
                })
            });
            let mut out = vec![0.0f32; N * N.max(BATCH)];
            group.bench_function(BenchmarkId::new("gemm_dx", id), |bch| {
                bch.iter(|| {
                    gemm_call(
                        BATCH,
                        N,
                        N,
                        &mut out,
                        (N as isize, 1),
                        black_box(dz.as_flattened()),
                        (N as isize, 1),
                        w.as_flattened(),
                        (N as isize, 1),
                        false,
                    )
                })
            });
            group.bench_function(BenchmarkId::new("gemm_dw", id), |bch| {
                bch.iter(|| {
                    gemm_call(
                        N,
                        N,
                        BATCH,
                        &mut out,
                        (N as isize, 1),
                        black_box(dz.as_flattened()),
                        (1, N as isize),
                        x.as_flattened(),
                        (N as isize, 1),
                        false,
                    )
                })
            });
        }};
    }
    shape!(64);
    shape!(128);
    group.finish();
}

/// σ(x) and σ'(x) over 4096 values: in one pass (one exponential per value), in two
/// passes (`activation_forward` + `activation_derivative`), and the textbook loop.
fn sigmoid_and_derivative(c: &mut Criterion) {
    let z: Vec<f32> = (0..4096).map(|k| (k as f32 - 2048.0) / 128.0).collect();
    let (mut a, mut d) = (vec![0.0f32; 4096], vec![0.0f32; 4096]);
    let mut group = c.benchmark_group("sigmoid_and_derivative_4096");
    group.throughput(Throughput::Elements(4096));
    group.bench_function("gradguard", |bch| {
        bch.iter(|| {
            kernels::activation_forward_and_derivative(&Sigmoid, black_box(&z), &mut a, &mut d)
        })
    });
    group.bench_function("gradguard_two_passes", |bch| {
        bch.iter(|| {
            kernels::activation_forward(&Sigmoid, black_box(&z), &mut a);
            kernels::activation_derivative(&Sigmoid, black_box(&z), &mut d);
        })
    });
    group.bench_function("std_f32_exp_loop", |bch| {
        bch.iter(|| {
            for ((ak, dk), &x) in a.iter_mut().zip(d.iter_mut()).zip(black_box(&z)) {
                let s = 1.0 / (1.0 + (-x).exp());
                *ak = s;
                *dk = s * (1.0 - s);
            }
        })
    });
    group.finish();
}

/// One SGD training step of an MLP 64-128-128-10, batch 32, softmax cross-entropy.
fn training_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step_64_128_128_10_batch32");
    let xv = random(64 * BATCH, 10);
    let labels: [usize; BATCH] = core::array::from_fn(|k| (k * 7) % 10);
    macro_rules! ours {
        ($name:literal, $act:ty) => {{
    type Net = Seq![Dense<64, 128, $act>, Dense<128, 128, $act>, Dense<128, 10>];
            let net = Net::default();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
            let mut p = Box::new(<Net as Layer>::Params::ZEROED);
            let mut g = Box::new(<Net as Layer>::Params::ZEROED);
            let mut ws = Box::new(Workspace::<Net, BATCH>::ZEROED);
            net.init(&mut p, Init::HeNormal, &mut rng);
            let x = boxed::<64, BATCH>(&xv);
            let mut sgd = Sgd::new(1e-3).expect("valid learning rate");
            group.bench_function(BenchmarkId::new("gradguard", $name), |bch| {
                bch.iter(|| {
                    train_step(
                        &net,
                        &mut p,
                        &mut g,
                        &mut ws,
                        &mut sgd,
                        &SoftmaxCrossEntropy,
                        black_box(&x),
                        &labels,
                    )
                })
            });
        }};
    }
    ours!("relu", Relu);
    ours!("sigmoid", Sigmoid);
    for (name, sigmoid) in [("relu", false), ("sigmoid", true)] {
        let mut mlp = NdMlp::new(128, BATCH, sigmoid);
        let x = Array2::from_shape_vec((BATCH, 64), xv.clone()).unwrap();
        group.bench_function(BenchmarkId::new("ndarray", name), |bch| {
            bch.iter(|| mlp.step(black_box(&x), &labels, 1e-3))
        });
        let mut mlp = Box::new(NaMlp::new(sigmoid));
        let x = Box::new(SMatrix::<f32, 64, BATCH>::from_column_slice(&xv));
        group.bench_function(BenchmarkId::new("nalgebra", name), |bch| {
            bch.iter(|| mlp.step(black_box(&x), &labels, 1e-3))
        });
    }
    group.finish();
}

/// The training step of 64-W-W-10 (ReLU, softmax cross-entropy, SGD) for widths W = 32…512
/// and batches 1, 8, 32, 128, gradguard against the ndarray MLP on the same shapes: whether
/// wide layers or small batches lose.
fn training_step_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step_scaling_64_w_w_10");
    macro_rules! case {
        ($w:literal, $b:literal) => {{
    type Net = Seq![Dense<64, $w, Relu>, Dense<$w, $w, Relu>, Dense<$w, 10>];
            let id = concat!("w", $w, "_b", $b);
            let net = Net::default();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
            let mut p = Box::new(<Net as Layer>::Params::ZEROED);
            let mut g = Box::new(<Net as Layer>::Params::ZEROED);
            let mut ws = Box::new(Workspace::<Net, $b>::ZEROED);
            net.init(&mut p, Init::HeNormal, &mut rng);
            let xv = random(64 * $b, 10);
            let x = boxed::<64, $b>(&xv);
            let labels: [usize; $b] = core::array::from_fn(|k| (k * 7) % 10);
            let mut sgd = Sgd::new(1e-3).expect("valid learning rate");
            group.bench_function(BenchmarkId::new("gradguard", id), |bch| {
                bch.iter(|| {
                    let mut trainer = Trainer::new(
                        &net,
                        &mut p,
                        &mut g,
                        &mut ws,
                        &mut sgd,
                        &SoftmaxCrossEntropy,
                    );
                    trainer.step(black_box(&x), &labels)
                })
            });
            let mut mlp = NdMlp::new($w, $b, false);
            let x = Array2::from_shape_vec(($b, 64), xv).unwrap();
            group.bench_function(BenchmarkId::new("ndarray", id), |bch| {
                bch.iter(|| mlp.step(black_box(&x), &labels, 1e-3))
            });
        }};
    }
    macro_rules! widths {
        ($($w:literal),*) => {$(
            case!($w, 1);
            case!($w, 8);
            case!($w, 32);
            case!($w, 128);
        )*};
    }
    widths!(32, 64, 128, 256, 512);
    group.finish();
}

fn sigmoid_std(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The same MLP (64-W-W-10, any width W and batch) written the way an ndarray user would:
/// row-major activations (B × units), `general_mat_mul` into preallocated buffers,
/// elementwise closures.
struct NdMlp {
    w: [Array2<f32>; 3],
    b: [Array1<f32>; 3],
    z: [Array2<f32>; 3],
    a: [Array2<f32>; 2],
    dz: [Array2<f32>; 3],
    da: [Array2<f32>; 2],
    dw: [Array2<f32>; 3],
    sigmoid: bool,
    batch: usize,
}

impl NdMlp {
    fn new(width: usize, batch: usize, sigmoid: bool) -> Self {
        let sizes = [(64, width), (width, width), (width, 10)];
        let w = core::array::from_fn(|l| {
            let (i, o) = sizes[l];
            Array2::from_shape_vec((o, i), random(i * o, 20 + l as u64)).unwrap()
        });
        NdMlp {
            w,
            b: core::array::from_fn(|l| Array1::zeros(sizes[l].1)),
            z: core::array::from_fn(|l| Array2::zeros((batch, sizes[l].1))),
            a: core::array::from_fn(|l| Array2::zeros((batch, sizes[l].1))),
            dz: core::array::from_fn(|l| Array2::zeros((batch, sizes[l].1))),
            da: core::array::from_fn(|l| Array2::zeros((batch, sizes[l].1))),
            dw: core::array::from_fn(|l| Array2::zeros((sizes[l].1, sizes[l].0))),
            sigmoid,
            batch,
        }
    }

    fn step(&mut self, x: &Array2<f32>, labels: &[usize], lr: f32) -> f32 {
        let (sigmoid, batch) = (self.sigmoid, self.batch as f32);
        let act = |v: f32| if sigmoid { sigmoid_std(v) } else { v.max(0.0) };
        // Forward.
        for l in 0..3 {
            let input = if l == 0 { x } else { &self.a[l - 1] };
            let dim = self.z[l].dim();
            self.z[l].assign(&self.b[l].broadcast(dim).unwrap());
            general_mat_mul(1.0, input, &self.w[l].t(), 1.0, &mut self.z[l]);
            if l < 2 {
                ndarray::Zip::from(&mut self.a[l])
                    .and(&self.z[l])
                    .for_each(|a, &z| *a = act(z));
            }
        }
        // Softmax cross-entropy.
        let mut loss = 0.0;
        for (s, (z, mut g)) in self.z[2]
            .axis_iter(Axis(0))
            .zip(self.dz[2].axis_iter_mut(Axis(0)))
            .enumerate()
        {
            let m = z.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            g.zip_mut_with(&z, |g, &v| *g = (v - m).exp());
            let sum = g.sum();
            loss += sum.ln() - (z[labels[s]] - m);
            g.mapv_inplace(|v| v / sum / batch);
            g[labels[s]] -= 1.0 / batch;
        }
        // Backward and SGD.
        for l in (0..3).rev() {
            let input = if l == 0 { x } else { &self.a[l - 1] };
            general_mat_mul(1.0, &self.dz[l].t(), input, 0.0, &mut self.dw[l]);
            let db = self.dz[l].sum_axis(Axis(0));
            if l > 0 {
                general_mat_mul(1.0, &self.dz[l], &self.w[l], 0.0, &mut self.da[l - 1]);
                let (dz, da, z, a) = (
                    &mut self.dz[l - 1],
                    &self.da[l - 1],
                    &self.z[l - 1],
                    &self.a[l - 1],
                );
                ndarray::Zip::from(dz)
                    .and(da)
                    .and(z)
                    .and(a)
                    .for_each(|dz, &g, &z, &a| {
                        *dz = g * if sigmoid {
                            a * (1.0 - a)
                        } else if z > 0.0 {
                            1.0
                        } else {
                            0.0
                        };
                    });
            }
            self.w[l].scaled_add(-lr, &self.dw[l]);
            self.b[l].scaled_add(-lr, &db);
        }
        loss / batch
    }
}

/// The same MLP with nalgebra fixed-size matrices (column-major: one column per sample).
struct NaMlp {
    w1: SMatrix<f32, 128, 64>,
    w2: SMatrix<f32, 128, 128>,
    w3: SMatrix<f32, 10, 128>,
    b1: SMatrix<f32, 128, 1>,
    b2: SMatrix<f32, 128, 1>,
    b3: SMatrix<f32, 10, 1>,
    sigmoid: bool,
}

impl NaMlp {
    fn new(sigmoid: bool) -> Self {
        NaMlp {
            w1: SMatrix::from_row_slice(&random(128 * 64, 30)),
            w2: SMatrix::from_row_slice(&random(128 * 128, 31)),
            w3: SMatrix::from_row_slice(&random(10 * 128, 32)),
            b1: SMatrix::zeros(),
            b2: SMatrix::zeros(),
            b3: SMatrix::zeros(),
            sigmoid,
        }
    }

    fn step(&mut self, x: &SMatrix<f32, 64, BATCH>, labels: &[usize; BATCH], lr: f32) -> f32 {
        let sigmoid = self.sigmoid;
        let act = |v: f32| if sigmoid { sigmoid_std(v) } else { v.max(0.0) };
        let d_act = |z: f32, a: f32| {
            if sigmoid {
                a * (1.0 - a)
            } else if z > 0.0 {
                1.0
            } else {
                0.0
            }
        };
        let mut z1 = self.w1 * x;
        for mut c in z1.column_iter_mut() {
            c += &self.b1;
        }
        let a1 = z1.map(act);
        let mut z2 = self.w2 * a1;
        for mut c in z2.column_iter_mut() {
            c += &self.b2;
        }
        let a2 = z2.map(act);
        let mut z3 = self.w3 * a2;
        for mut c in z3.column_iter_mut() {
            c += &self.b3;
        }
        let mut g3 = SMatrix::<f32, 10, BATCH>::zeros();
        let mut loss = 0.0;
        for s in 0..BATCH {
            let z = z3.column(s);
            let m = z.max();
            let e = z.map(|v| (v - m).exp());
            let sum = e.sum();
            loss += sum.ln() - (z[labels[s]] - m);
            let mut g = e / (sum * BATCH as f32);
            g[labels[s]] -= 1.0 / BATCH as f32;
            g3.set_column(s, &g);
        }
        let dw3 = g3 * a2.transpose();
        let da2 = self.w3.transpose() * g3;
        let g2 = da2.zip_zip_map(&z2, &a2, |g, z, a| g * d_act(z, a));
        let dw2 = g2 * a1.transpose();
        let da1 = self.w2.transpose() * g2;
        let g1 = da1.zip_zip_map(&z1, &a1, |g, z, a| g * d_act(z, a));
        let dw1 = g1 * x.transpose();
        self.w3 -= dw3 * lr;
        self.w2 -= dw2 * lr;
        self.w1 -= dw1 * lr;
        self.b3 -= g3.column_sum() * lr;
        self.b2 -= g2.column_sum() * lr;
        self.b1 -= g1.column_sum() * lr;
        loss / BATCH as f32
    }
}

/// Multiply-adds per chain per call of `fma_chains_512` or `fma_chains_256`.
const CHAIN_STEPS: usize = 1024;
/// Independent chains: more than latency × issue width of any x86 core so far (4 × 2).
const CHAINS: usize = 12;

/// This core's FMA peak, the yardstick of the matrix kernels' "% of peak": `CHAINS`
/// independent chains of `CHAIN_STEPS` fused multiply-adds on the widest vectors the CPU
/// has (AVX-512, else AVX2+FMA), nothing else in the loop. Throughput is in FLOP (2 per
/// lane and multiply-add), so criterion's Gelem/s is GFLOP/s.
fn fma_peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("fma_peak");
    #[cfg(target_arch = "x86_64")]
    {
        let (m, d) = (0.999_9, 1e-4);
        let flops = |lanes: usize| Throughput::Elements((2 * lanes * CHAINS * CHAIN_STEPS) as u64);
        if is_x86_feature_detected!("avx512f") {
            group.throughput(flops(16));
            group.bench_function("fma_chains", |bch| {
                // SAFETY: AVX-512F was detected above.
                bch.iter(|| unsafe { fma_chains_512(black_box(m), black_box(d)) })
            });
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            group.throughput(flops(8));
            group.bench_function("fma_chains", |bch| {
                // SAFETY: AVX2 and FMA were detected above.
                bch.iter(|| unsafe { fma_chains_256(black_box(m), black_box(d)) })
            });
        }
    }
    group.finish();
}

/// `CHAINS` chains `a ← a·m + d` of `CHAIN_STEPS` fused multiply-adds on one vector type
/// (`$set1`, `$fmadd`, `$add`, `$store` its intrinsics); returns a sum of the results so
/// nothing is optimised away. One function per instruction set, so the AVX2 one has no
/// EVEX encodings.
macro_rules! fma_chains {
    ($name:ident, $features:literal, $set1:ident, $fmadd:ident, $add:ident, $store:ident) => {
        /// # Safety
        #[doc = concat!("The CPU must have ", $features, ".")]
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(m: f32, d: f32) -> f32 {
            use std::arch::x86_64::*;
            let (m, d) = ($set1(m), $set1(d));
            let mut a = [$set1(1.0); CHAINS];
            for _ in 0..CHAIN_STEPS {
                for v in &mut a {
                    *v = $fmadd(*v, m, d);
                }
            }
            let sum = a.iter().fold($set1(0.0), |s, &v| $add(s, v));
            let mut out = [0.0f32; 16];
            // SAFETY: `out` holds 16 f32, as many as the widest vector.
            unsafe { $store(out.as_mut_ptr(), sum) };
            out.iter().sum()
        }
    };
}
fma_chains!(
    fma_chains_512,
    "avx512f",
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_storeu_ps
);
fma_chains!(
    fma_chains_256,
    "avx2,fma",
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_storeu_ps
);

criterion_group!(
    benches,
    fma_peak,
    alignment,
    dense_forward,
    dense_forward_single,
    dense_backward,
    sigmoid_and_derivative,
    training_step,
    training_step_scaling
);
criterion_main!(benches);
