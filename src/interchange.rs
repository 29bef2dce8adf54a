//! Weights in and out of the tools people train in: [safetensors] files with PyTorch's
//! `nn.Sequential` names (feature `safetensors`; it needs an allocator, so it is for the host).
//!
//! gradguard's `Dense<IN, OUT>` stores W as OUT × IN, row-major, like `nn.Linear`, so
//! tensors move without a transpose: a network trained as
//! `nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))` and saved with
//! `safetensors.torch.save_file(model.state_dict(), path)` loads into
//! `Seq![Dense<64, 16, Relu>, Dense<16, 10>]` ([`Naming::Sequential`]: parametrised layer
//! `l` is module `2·l`, so `0.weight`, `0.bias`, `2.weight`, `2.bias`), and
//! [`save_safetensors`] writes that file back byte for byte. A file that does not fit the
//! network is an [`InterchangeError`] listing what was expected; the destination is then
//! unchanged.
//!
//! For tools that know the shapes only at run time, [`safetensors_to_image`] and
//! [`image_to_safetensors`] convert between safetensors and the no_std
//! [`image`] format of a chain of dense layers (`examples/export.rs` is such a
//! tool).
//!
//! ```
//! use gradguard::interchange::{load_safetensors, save_safetensors, Naming};
//! use gradguard::{Dense, Layer, Relu, Seq, Zeroed};
//!
//! type Net = Seq![Dense<64, 16, Relu>, Dense<16, 10>];
//! // Trained in PyTorch (tools/pytorch-digits.py wrote this file).
//! let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pytorch-digits-64-16-10.safetensors"))?;
//! let mut params = <Net as Layer>::Params::ZEROED;
//! load_safetensors(&file, Naming::Sequential, &mut params)?;
//! assert_eq!(save_safetensors(&params, Naming::Sequential)?, file);
//!
//! // Another architecture is refused with what was expected.
//! let mut other = <Seq![Dense<64, 32, Relu>, Dense<32, 10>] as Layer>::Params::ZEROED;
//! let e = load_safetensors(&file, Naming::Sequential, &mut other).unwrap_err();
//! assert!(e.to_string().contains("0.weight: shape [16, 64], expected [32, 64]"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [safetensors]: https://huggingface.co/docs/safetensors
#![deny(clippy::arithmetic_side_effects)]

extern crate alloc;

use crate::image::{self, Content, Layout, NonFinite, HEADER_BYTES};
use crate::{Error, Parameters, TensorInfo, TensorKind};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// How the tensors of parametrised layer `l` are named in a file.
///
/// ```
/// use gradguard::interchange::Naming;
/// assert_eq!(Naming::Sequential.prefix(1).as_deref(), Some("2"));
/// assert_eq!(Naming::Prefixes(&["fc1", "fc2"]).prefix(1).as_deref(), Some("fc2"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming<'a> {
    /// PyTorch `nn.Sequential` with one activation module after every hidden `Linear`:
    /// layer `l` is module `2·l` (`0.weight`, `0.bias`, `2.weight`, …).
    Sequential,
    /// One module name per parametrised layer (e.g. `["fc1", "fc2"]` for a `nn.Module` with
    /// attributes `fc1` and `fc2`): `fc1.weight`, `fc1.bias`, …
    Prefixes(&'a [&'a str]),
}

impl Naming<'_> {
    /// The module name of parametrised layer `layer` (`None` past the given prefixes).
    #[must_use]
    pub fn prefix(&self, layer: usize) -> Option<String> {
        match self {
            Naming::Sequential => layer.checked_mul(2).map(|m| m.to_string()),
            Naming::Prefixes(names) => names.get(layer).map(|n| (*n).to_string()),
        }
    }

    /// The name of a tensor: `<prefix>.weight` or `<prefix>.bias`.
    fn name(&self, t: &TensorInfo) -> Option<String> {
        let kind = match t.kind {
            // PyTorch's BatchNorm1d calls γ and β `weight` and `bias`.
            TensorKind::Weight | TensorKind::Scale => "weight",
            TensorKind::Bias => "bias",
            TensorKind::RunningMean => "running_mean",
            TensorKind::RunningVariance => "running_var",
        };
        self.prefix(t.layer).map(|p| format!("{p}.{kind}"))
    }
}

/// Why a file did not load or could not be written.
///
/// ```
/// use gradguard::interchange::{load_safetensors, InterchangeError, Naming};
/// use gradguard::{Dense, Layer, Zeroed};
/// let mut p = <Dense<2, 2> as Layer>::Params::ZEROED;
/// let e = load_safetensors(b"not safetensors", Naming::Sequential, &mut p).unwrap_err();
/// assert!(matches!(e, InterchangeError::Format(_)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum InterchangeError {
    /// Not a valid safetensors file (the parser's message).
    Format(String),
    /// The file does not fit the network: one line per problem (a missing, unexpected,
    /// misshaped or non-f32 tensor), then the tensors that were expected.
    Mismatch(Vec<String>),
    /// A [`Naming::Prefixes`] list with fewer names than the network has layers.
    NotEnoughNames {
        /// Parametrised layers of the network.
        layers: usize,
        /// Names given.
        names: usize,
    },
    /// A gradguard image was refused (for [`image_to_safetensors`]).
    Image(Error),
}

impl fmt::Display for InterchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterchangeError::Format(m) => write!(f, "not a safetensors file: {m}"),
            InterchangeError::Mismatch(lines) => {
                write!(f, "the file does not fit the network:")?;
                lines.iter().try_for_each(|l| write!(f, "\n  {l}"))
            }
            InterchangeError::NotEnoughNames { layers, names } => {
                write!(f, "{names} names for {layers} parametrised layers")
            }
            InterchangeError::Image(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for InterchangeError {}

impl From<Error> for InterchangeError {
    fn from(e: Error) -> Self {
        InterchangeError::Image(e)
    }
}

/// Name and shape (`[rows, cols]`, or `[rows]` for a bias) of every tensor of `P`.
fn expected<P: Parameters>(
    naming: Naming<'_>,
) -> Result<Vec<(String, Vec<usize>)>, InterchangeError> {
    named(
        (0..P::TENSORS).filter_map(P::tensor_info),
        P::LAYERS,
        naming,
    )
}

/// Name and shape of each of `tensors` (of a network with `layers` parametrised layers).
fn named(
    tensors: impl IntoIterator<Item = TensorInfo>,
    layers: usize,
    naming: Naming<'_>,
) -> Result<Vec<(String, Vec<usize>)>, InterchangeError> {
    tensors
        .into_iter()
        .map(|t| {
            let name = naming.name(&t).ok_or(InterchangeError::NotEnoughNames {
                layers,
                names: match naming {
                    Naming::Prefixes(n) => n.len(),
                    Naming::Sequential => layers,
                },
            })?;
            Ok((name, shape_of(&t)))
        })
        .collect()
}

fn shape_of(t: &TensorInfo) -> Vec<usize> {
    match t.kind {
        TensorKind::Weight => vec![t.rows, t.cols],
        TensorKind::Bias
        | TensorKind::Scale
        | TensorKind::RunningMean
        | TensorKind::RunningVariance => vec![t.rows],
    }
}

/// The tensors of `file` as `expected` asks for them, in that order, or every problem.
fn matching<'f>(
    file: &SafeTensors<'f>,
    expected: &[(String, Vec<usize>)],
) -> Result<Vec<&'f [u8]>, InterchangeError> {
    let mut problems = Vec::new();
    let mut found = Vec::new();
    for (name, shape) in expected {
        match file.tensor(name) {
            Err(_) => problems.push(format!("{name}: missing, expected f32 {shape:?}")),
            Ok(t) if t.dtype() != Dtype::F32 => {
                problems.push(format!("{name}: dtype {:?}, expected F32", t.dtype()));
            }
            Ok(t) if t.shape() != shape.as_slice() => {
                problems.push(format!("{name}: shape {:?}, expected {shape:?}", t.shape()));
            }
            Ok(t) => found.push(t.data()),
        }
    }
    let mut names = file.names();
    names.sort_unstable();
    for name in names {
        // PyTorch's BatchNorm1d saves a step counter gradguard has no use for.
        let counter_of_a_batch_norm = name.strip_suffix(".num_batches_tracked").is_some_and(|p| {
            let running_mean = format!("{p}.running_mean");
            expected.iter().any(|(n, _)| *n == running_mean)
        });
        if !counter_of_a_batch_norm && !expected.iter().any(|(n, _)| n == name) {
            problems.push(format!("{name}: not a tensor of this network"));
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        problems.push("expected:".into());
        problems.extend(expected.iter().map(|(n, s)| format!("  {n}: f32 {s:?}")));
        Err(InterchangeError::Mismatch(problems))
    }
}

fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, InterchangeError> {
    SafeTensors::deserialize(bytes).map_err(|e| InterchangeError::Format(e.to_string()))
}

/// Loads a safetensors file into `params` in place. Every tensor of the network must be in
/// the file as f32 with its shape, and the file must hold nothing else (but the
/// `num_batches_tracked` counters of PyTorch's batch norms, which are ignored); otherwise the error
/// lists the problems and what was expected, and `params` is unchanged.
///
/// ```
/// use gradguard::interchange::{load_safetensors, save_safetensors, Naming};
/// use gradguard::{Dense, Layer, Zeroed};
/// let mut p = <Dense<3, 2> as Layer>::Params::ZEROED;
/// p.bias = [1.0, 2.0];
/// let file = save_safetensors(&p, Naming::Prefixes(&["fc"]))?;
/// let mut q = <Dense<3, 2> as Layer>::Params::ZEROED;
/// load_safetensors(&file, Naming::Prefixes(&["fc"]), &mut q)?;
/// assert_eq!(q, p);
/// # Ok::<(), gradguard::interchange::InterchangeError>(())
/// ```
///
/// # Errors
/// [`InterchangeError::Format`] if `bytes` is not safetensors, [`InterchangeError::Mismatch`]
/// listing every missing, unexpected, misshaped or non-f32 tensor,
/// [`InterchangeError::NotEnoughNames`] for too short a [`Naming::Prefixes`]; `params` is then
/// unchanged.
pub fn load_safetensors<P: Parameters>(
    bytes: &[u8],
    naming: Naming<'_>,
    params: &mut P,
) -> Result<(), InterchangeError> {
    let file = parse(bytes)?;
    let data = matching(&file, &expected::<P>(naming)?)?;
    for (i, bytes) in data.into_iter().enumerate() {
        for (v, b) in params.tensor_mut(i).iter_mut().zip(bytes.chunks_exact(4)) {
            *v = image::f32_at(b);
        }
    }
    Ok(())
}

/// Writes `params` as a safetensors file (f32, little-endian, no metadata: what
/// `safetensors.torch.save_file(model.state_dict(), path)` writes for the same tensors).
///
/// ```
/// use gradguard::interchange::{save_safetensors, Naming};
/// use gradguard::{Dense, Layer, Zeroed};
/// let file = save_safetensors(&<Dense<3, 2> as Layer>::Params::ZEROED, Naming::Sequential)?;
/// assert!(String::from_utf8_lossy(&file).contains(r#""0.weight":{"dtype":"F32","shape":[2,3]"#));
/// # Ok::<(), gradguard::interchange::InterchangeError>(())
/// ```
///
/// # Errors
/// [`InterchangeError::NotEnoughNames`] for too short a [`Naming::Prefixes`],
/// [`InterchangeError::Format`] if the safetensors writer refuses.
pub fn save_safetensors<P: Parameters>(
    params: &P,
    naming: Naming<'_>,
) -> Result<Vec<u8>, InterchangeError> {
    let expected = expected::<P>(naming)?;
    let data: Vec<Vec<u8>> = (0..P::TENSORS)
        .map(|i| {
            params
                .tensor(i)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    serialize(&expected, &data)
}

fn serialize(
    expected: &[(String, Vec<usize>)],
    data: &[impl AsRef<[u8]>],
) -> Result<Vec<u8>, InterchangeError> {
    let views = expected
        .iter()
        .zip(data)
        .map(|((name, shape), bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes.as_ref())
                .map(|v| (name.as_str(), v))
                .map_err(|e| InterchangeError::Format(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, None).map_err(|e| InterchangeError::Format(e.to_string()))
}

/// The tensors of a chain of dense layers with `sizes` (inputs, then each layer's units,
/// e.g. `[64, 16, 10]`), in the image's order.
fn dense_chain(sizes: &[usize]) -> Vec<TensorInfo> {
    sizes
        .windows(2)
        .enumerate()
        .flat_map(|(layer, w)| {
            let (inputs, units) = (
                w.first().copied().unwrap_or(0),
                w.get(1).copied().unwrap_or(0),
            );
            [
                TensorInfo {
                    layer,
                    kind: TensorKind::Weight,
                    rows: units,
                    cols: inputs,
                },
                TensorInfo {
                    layer,
                    kind: TensorKind::Bias,
                    rows: units,
                    cols: 1,
                },
            ]
        })
        .collect()
}

fn layout_of(tensors: &[TensorInfo]) -> Layout {
    let values = tensors.iter().fold(0usize, |n, t| {
        n.saturating_add(t.rows.saturating_mul(t.cols))
    });
    Layout {
        content: Content::Parameters,
        tensors: tensors.len(),
        values,
        signature: image::signature_of(tensors.iter().copied()),
    }
}

/// Converts a safetensors file of a chain of dense layers (layer `l` named by `naming`;
/// the layers are found from the names, the sizes from the shapes) into a gradguard
/// parameter image, and returns the image and the sizes (inputs, then units per layer).
///
/// ```
/// use gradguard::interchange::{safetensors_to_image, save_safetensors, Naming};
/// use gradguard::{Dense, Layer, Relu, Seq, Zeroed};
/// type Net = Seq![Dense<4, 3, Relu>, Dense<3, 2>];
/// let file = save_safetensors(&<Net as Layer>::Params::ZEROED, Naming::Sequential)?;
/// let (image, sizes) = safetensors_to_image(&file, Naming::Sequential)?;
/// assert_eq!(sizes, [4, 3, 2]);
/// assert_eq!(image.len(), 32 + 4 * (4 * 3 + 3 + 3 * 2 + 2));
/// # Ok::<(), gradguard::interchange::InterchangeError>(())
/// ```
///
/// # Errors
/// [`InterchangeError::Format`] if `bytes` is not safetensors, [`InterchangeError::Mismatch`] if
/// its tensors are not a chain of dense layers named by `naming`.
pub fn safetensors_to_image(
    bytes: &[u8],
    naming: Naming<'_>,
) -> Result<(Vec<u8>, Vec<usize>), InterchangeError> {
    let file = parse(bytes)?;
    let mut sizes = Vec::new();
    let mut layer = 0usize;
    while let Some(prefix) = naming.prefix(layer) {
        let Ok(w) = file.tensor(&format!("{prefix}.weight")) else {
            break;
        };
        let &[units, inputs] = w.shape() else {
            return Err(InterchangeError::Mismatch(vec![format!(
                "{prefix}.weight: shape {:?}, expected [units, inputs]",
                w.shape()
            )]));
        };
        if sizes.is_empty() {
            sizes.push(inputs);
        }
        sizes.push(units);
        layer = layer.saturating_add(1);
    }
    if sizes.is_empty() {
        let first = naming.prefix(0).unwrap_or_default();
        return Err(InterchangeError::Mismatch(vec![format!(
            "{first}.weight: missing; no dense layer found"
        )]));
    }
    let tensors = dense_chain(&sizes);
    let expected = named(
        tensors.iter().copied(),
        sizes.len().saturating_sub(1),
        naming,
    )?;
    let data = matching(&file, &expected)?;
    let layout = layout_of(&tensors);
    let mut out = vec![0u8; layout.image_bytes().unwrap_or(HEADER_BYTES)];
    layout.write(&mut out, |payload| {
        // The tensors' bytes are little-endian f32 already.
        let mut rest = payload;
        for bytes in &data {
            let (head, tail) = rest.split_at_mut(bytes.len().min(rest.len()));
            head.copy_from_slice(bytes.get(..head.len()).unwrap_or_default());
            rest = tail;
        }
    })?;
    Ok((out, sizes))
}

/// Converts a gradguard parameter image of a chain of dense layers with `sizes` (inputs,
/// then units per layer) into a safetensors file named by `naming`. The image is verified
/// first (shape signature, checksum; non-finite values are kept).
///
/// ```
/// use gradguard::interchange::{image_to_safetensors, save_safetensors, Naming};
/// use gradguard::{image, Dense, Layer, Relu, Seq, Zeroed};
/// type Net = Seq![Dense<4, 3, Relu>, Dense<3, 2>];
/// let p = <Net as Layer>::Params::ZEROED;
/// let mut img = vec![0u8; 32 + 4 * 23];
/// image::save(&p, &mut img)?;
/// assert_eq!(image_to_safetensors(&img, &[4, 3, 2], Naming::Sequential)?, save_safetensors(&p, Naming::Sequential)?);
/// assert!(image_to_safetensors(&img, &[3, 4, 2], Naming::Sequential).is_err()); // other shape
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`InterchangeError::Image`] if the image is refused (another shape, corrupt, …),
/// [`InterchangeError::NotEnoughNames`] or [`InterchangeError::Format`] as for [`save_safetensors`].
pub fn image_to_safetensors(
    image_bytes: &[u8],
    sizes: &[usize],
    naming: Naming<'_>,
) -> Result<Vec<u8>, InterchangeError> {
    let tensors = dense_chain(sizes);
    let payload = layout_of(&tensors).check(image_bytes, NonFinite::Accept, |_, _| true)?;
    let expected = named(
        tensors.iter().copied(),
        sizes.len().saturating_sub(1),
        naming,
    )?;
    let mut data = Vec::with_capacity(tensors.len());
    let mut rest = payload;
    for t in &tensors {
        let len = t
            .rows
            .saturating_mul(t.cols)
            .saturating_mul(4)
            .min(rest.len());
        let (bytes, tail) = rest.split_at(len);
        rest = tail;
        data.push(bytes);
    }
    serialize(&expected, &data)
}
