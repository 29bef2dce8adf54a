//! Data shipped with the crate.

/// The UCI 8×8 handwritten digits (1797 samples, 64 features in 0..=16, 10 classes), as
/// shipped by scikit-learn (`load_digits`), embedded with `include_bytes!` (116 805 bytes;
/// only linked into a binary that uses it).
///
/// Source and licence: E. Alpaydin and C. Kaynak, *Optical Recognition of Handwritten
/// Digits*, UCI Machine Learning Repository (1998), CC BY 4.0 as stated by UCI; converted
/// to a binary layout (65-byte records: 64 pixels row-major, then the label). See
/// `data/README.md`.
///
/// The split is the stratified rule of that README: walking the records in order with a
/// counter per class, a record is a test record iff its class counter `k % 6 == 5`
/// (1501 train / 296 test), computed at compile time.
///
/// ```
/// use gradguard::datasets::digits;
/// assert_eq!(digits::label(0), Some(0));
/// assert_eq!((digits::TRAIN.len(), digits::TEST.len()), (1501, 296));
/// assert_eq!(&digits::TEST[..3], &[35, 39, 48]);
/// let x = digits::features(0).unwrap();
/// assert_eq!(x[2], 5.0 / 16.0);
/// ```
pub mod digits {
    // Public functions take user-chosen indices: no arithmetic that can overflow or panic.
    #![deny(clippy::arithmetic_side_effects)]

    use crate::health::GradientObserver;
    use crate::{
        argmax, compute_gradients, train_step, Error, Layer, Optimizer, SoftmaxCrossEntropy,
        Workspace,
    };

    /// Number of samples.
    pub const SAMPLES: usize = 1797;
    /// Features per sample (8×8 pixels).
    pub const FEATURES: usize = 64;
    /// Number of classes.
    pub const CLASSES: usize = 10;
    /// Bytes per record: 64 pixels and a label.
    const RECORD: usize = FEATURES + 1;

    /// The raw records.
    pub static RAW: &[u8; SAMPLES * RECORD] = include_bytes!("../data/digits.bin");

    // Evaluated at compile time: an out-of-range index here is a compile error, never a
    // runtime panic.
    #[allow(clippy::indexing_slicing)]
    const IS_TEST: [bool; SAMPLES] = {
        let mut out = [false; SAMPLES];
        let mut count = [0usize; CLASSES];
        let mut i = 0;
        while i < SAMPLES {
            let label = RAW[i * RECORD + FEATURES] as usize % CLASSES;
            out[i] = count[label] % 6 == 5;
            count[label] += 1;
            i += 1;
        }
        out
    };

    // Only called in `static` initialisers (compile time), like `IS_TEST`; i, k < SAMPLES.
    #[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
    const fn indices<const N: usize>(test: bool) -> [u16; N] {
        let mut out = [0u16; N];
        let (mut i, mut k) = (0, 0);
        while i < SAMPLES {
            if IS_TEST[i] == test && k < N {
                out[k] = i as u16;
                k += 1;
            }
            i += 1;
        }
        out
    }

    /// Indices of the 1501 training samples, in file order.
    pub static TRAIN: [u16; 1501] = indices::<1501>(false);
    /// Indices of the 296 test samples, in file order.
    pub static TEST: [u16; 296] = indices::<296>(true);

    /// The 64 pixels of sample `i` scaled to [0, 1] (pixel / 16), or `None` past the end.
    ///
    /// ```
    /// assert!(gradguard::datasets::digits::features(1797).is_none());
    /// ```
    #[must_use]
    pub fn features(i: usize) -> Option<[f32; FEATURES]> {
        let start = i.checked_mul(RECORD)?;
        let record = RAW.get(start..start.checked_add(FEATURES)?)?;
        let mut x = [0.0; FEATURES];
        for (v, &p) in x.iter_mut().zip(record) {
            *v = f32::from(p) / 16.0;
        }
        Some(x)
    }

    /// The class (0..=9) of sample `i`, or `None` past the end.
    ///
    /// ```
    /// assert_eq!(gradguard::datasets::digits::label(9), Some(9));
    /// ```
    #[must_use]
    pub fn label(i: usize) -> Option<usize> {
        let at = i.checked_mul(RECORD)?.checked_add(FEATURES)?;
        RAW.get(at).map(|&l| usize::from(l))
    }

    /// Fills a batch from the samples `indices` (cycled if shorter than the batch).
    /// Returns `false`, leaving the rest of the batch untouched, at the first index that is
    /// out of range or if `indices` is empty.
    ///
    /// ```
    /// use gradguard::datasets::digits;
    /// let (mut x, mut y) = ([[0.0; 64]; 4], [0usize; 4]);
    /// assert!(digits::fill_batch(&digits::TEST[..4], &mut x, &mut y));
    /// assert_eq!(y, [digits::label(35).unwrap(), digits::label(39).unwrap(), digits::label(48).unwrap(), digits::label(52).unwrap()]);
    /// ```
    pub fn fill_batch<const B: usize>(
        indices: &[u16],
        x: &mut [[f32; FEATURES]; B],
        y: &mut [usize; B],
    ) -> bool {
        if indices.is_empty() {
            return false;
        }
        for ((xs, ys), &i) in x.iter_mut().zip(y.iter_mut()).zip(indices.iter().cycle()) {
            match (features(usize::from(i)), label(usize::from(i))) {
                (Some(f), Some(l)) => {
                    *xs = f;
                    *ys = l;
                }
                _ => return false,
            }
        }
        true
    }

    /// One epoch of mini-batch training with [`SoftmaxCrossEntropy`] over the samples
    /// `order` (shuffle it between epochs with [`crate::init::shuffle`]), in batches of `B`;
    /// the last batch is filled up by cycling its samples. Returns the mean batch loss.
    ///
    /// ```
    /// use gradguard::{datasets::digits, init::Init, Dense, Layer, Sgd, Workspace, Zeroed};
    /// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
    /// type Net = Dense<64, 10>;
    /// let net = Net::default();
    /// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
    /// net.init(&mut p, Init::XavierUniform, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    /// let mut ws = Workspace::<Net, 32>::ZEROED; // 4 KB; a large one belongs in a `static`
    /// let mut sgd = Sgd::new(0.1).unwrap();
    /// let loss = digits::train_epoch(&net, &mut p, &mut g, &mut ws, &mut sgd, &digits::TRAIN[..256]).unwrap();
    /// assert!(loss.is_finite());
    /// ```
    ///
    /// # Errors
    /// Those of [`crate::train_step`] (an out-of-range label cannot occur: the digits' labels are 0–9).
    pub fn train_epoch<L, O, const B: usize>(
        net: &L,
        params: &mut L::Params,
        grads: &mut L::Params,
        workspace: &mut Workspace<L, B>,
        optimizer: &mut O,
        order: &[u16],
    ) -> Result<f32, Error>
    where
        L: Layer<Input = [f32; FEATURES], Output = [f32; CLASSES]>,
        O: Optimizer<L::Params>,
    {
        let (mut x, mut y) = ([[0.0; FEATURES]; B], [0usize; B]);
        let (mut total, mut batches) = (0.0_f32, 0usize);
        for chunk in order.chunks(B.max(1)) {
            if !fill_batch(chunk, &mut x, &mut y) {
                break;
            }
            total += train_step(
                net,
                params,
                grads,
                workspace,
                optimizer,
                &SoftmaxCrossEntropy,
                &x,
                &y,
            )?;
            batches = batches.saturating_add(1);
        }
        Ok(total / batches.max(1) as f32)
    }

    /// Fraction of the samples `indices` that `net` classifies correctly, evaluated in
    /// batches of `B` using `cache` as scratch space.
    ///
    /// ```
    /// use gradguard::{datasets::digits, Dense, Layer, Zeroed};
    /// type Net = Dense<64, 10>;
    /// let p = <Net as Layer>::Params::ZEROED; // all outputs equal: always predicts class 0
    /// let mut cache = <Net as Layer>::Cache::<8>::ZEROED;
    /// let acc = digits::accuracy(&Net::default(), &p, &mut cache, &digits::TEST);
    /// assert!((acc - 29.0 / 296.0).abs() < 1e-6);
    /// ```
    pub fn accuracy<L, const B: usize>(
        net: &L,
        params: &L::Params,
        cache: &mut L::Cache<B>,
        indices: &[u16],
    ) -> f32
    where
        L: Layer<Input = [f32; FEATURES], Output = [f32; CLASSES]>,
    {
        let (mut x, mut y) = ([[0.0; FEATURES]; B], [0usize; B]);
        let mut correct = 0usize;
        for chunk in indices.chunks(B.max(1)) {
            if !fill_batch(chunk, &mut x, &mut y) {
                break;
            }
            net.forward(params, &x, cache);
            let outputs = L::output(cache);
            let hits = outputs
                .iter()
                .zip(y.iter())
                .take(chunk.len())
                .filter(|(row, &label)| argmax(row.as_slice()) == label)
                .count();
            correct = correct.saturating_add(hits);
        }
        correct as f32 / indices.len().max(1) as f32
    }

    /// Forward, softmax cross-entropy and one observed backward pass on the first `B` samples
    /// of `indices`, without updating the parameters: the gradient health of `net` as it is
    /// (at initialisation, or after training). Returns the batch loss; `grads` receives the
    /// gradients.
    ///
    /// ```
    /// use gradguard::health::{HealthConfig, HealthReport};
    /// use gradguard::{datasets::digits, init::Init, Dense, Layer, Sigmoid, Seq, Workspace, Zeroed};
    /// use rand_xoshiro::{rand_core::SeedableRng, Xoshiro256PlusPlus};
    /// type Net = Seq![Dense<64, 16, Sigmoid>, Dense<16, 10>];
    /// let net = Net::default();
    /// let (mut p, mut g) = (<Net as Layer>::Params::ZEROED, <Net as Layer>::Params::ZEROED);
    /// net.init(&mut p, Init::XavierNormal, &mut Xoshiro256PlusPlus::seed_from_u64(0));
    /// let mut ws = Workspace::<Net, 32>::ZEROED; // 4 KB; a large one belongs in a `static`
    /// let mut report = HealthReport::<2>::new(HealthConfig::DEFAULT);
    /// digits::gradient_health(&net, &p, &mut g, &mut ws, &digits::TRAIN, &mut report).unwrap();
    /// assert_eq!(report.layers_from_output().len(), 2);
    /// ```
    ///
    /// # Errors
    /// Those of [`crate::compute_gradients`] (none for the digits' labels).
    pub fn gradient_health<L, H, const B: usize>(
        net: &L,
        params: &L::Params,
        grads: &mut L::Params,
        workspace: &mut Workspace<L, B>,
        indices: &[u16],
        observer: &mut H,
    ) -> Result<f32, Error>
    where
        L: Layer<Input = [f32; FEATURES], Output = [f32; CLASSES]>,
        H: GradientObserver,
    {
        let (mut x, mut y) = ([[0.0; FEATURES]; B], [0usize; B]);
        if !fill_batch(indices, &mut x, &mut y) {
            return Ok(f32::NAN);
        }
        observer.begin_backward(f32::NAN);
        compute_gradients(
            net,
            params,
            grads,
            workspace,
            &SoftmaxCrossEntropy,
            &x,
            &y,
            observer,
        )
    }
}
