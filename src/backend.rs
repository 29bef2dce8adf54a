//! The names of the kernel sets (instruction sets): at the bottom of the crate, so that
//! [`crate::Error`] can name one without depending on the kernels. Detection, selection and
//! dispatch are in `kernels::dispatch`.

/// The vector backends, listed once, best last. Each line is the backend's documentation,
/// its `repr(u8)` value and name, the cfg under which a build contains it (from `build.rs`),
/// when this machine can run it, whether its matrix kernels fuse multiply-adds, and how its
/// kernels are compiled (`kernels::isa`'s `kernel_body!`: `features [vector type, target
/// features]` for run-time detected ones, `baseline [vector type]` for those the build
/// enables). Generated from it: the [`Backend`] enum, [`Backend::ALL`] and
/// [`Backend::name`] (here); `is_available` and `fuses_multiply_add` (`kernels::dispatch`);
/// the token types, their kernels, `AnyIsa`, `Backend::isa` and `with_isa!`'s arms
/// (`kernels::isa`). Adding a backend is its vector-type file plus one line here.
macro_rules! vector_backends {
    ($($callback:ident)::+!($($head:tt)*)) => {
        $($callback)::+! { ($($head)*)
            /// x86_64 SSE2 (every x86_64 CPU), 4 lanes.
            Sse2 = 2, "sse2", [gradguard_sse2] available(cfg!(gradguard_sse2)), fma(false),
                features [super::x86::Sse2, "sse2"];
            /// wasm32 simd128 (when the build enables it), 4 lanes.
            Simd128 = 6, "simd128", [gradguard_simd128] available(cfg!(gradguard_simd128)),
                fma(false), baseline [super::wasm::Simd128];
            /// aarch64 NEON (the aarch64 baseline), 4 lanes.
            Neon = 5, "neon", [gradguard_neon] available(cfg!(gradguard_neon)), fma(true),
                baseline [super::neon::Neon];
            /// x86_64 AVX2 with FMA, 8 lanes.
            Avx2 = 3, "avx2", [gradguard_sse2] available(cpu().avx2_fma), fma(true),
                features [super::x86::Avx2, "avx2,fma"];
            /// x86_64 AVX-512F, 16 lanes.
            Avx512 = 4, "avx512", [gradguard_sse2] available(cpu().avx512), fma(true),
                features [super::x86::Avx512, "avx512f,avx2,fma"];
        }
    };
}
pub(crate) use vector_backends;

/// [`Backend`], [`Backend::ALL`] and [`Backend::name`] from the list.
macro_rules! define_backend {
    (() $($(#[$doc:meta])* $name:ident = $value:literal, $text:literal, [$cfg:meta]
        available($available:expr), fma($fma:expr), $how:ident $arguments:tt;)*) => {
        /// A set of kernels for one instruction set.
        ///
        /// ```
        /// use gradguard::kernels::{backend, Backend};
        /// assert!(backend().is_available());
        /// assert!(Backend::Scalar.is_available());
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(u8)]
        #[non_exhaustive]
        pub enum Backend {
            /// Portable scalar code: the reference, and the microcontroller path.
            Scalar = 1,
            $($(#[$doc])* $name = $value,)*
        }

        impl Backend {
            /// Every backend, best last.
            ///
            /// ```
            /// assert_eq!(gradguard::kernels::Backend::ALL.len(), 6);
            /// ```
            pub const ALL: &'static [Backend] = &[Backend::Scalar, $(Backend::$name,)*];

            /// The name used by `GRADGUARD_BACKEND` and in reports.
            ///
            /// ```
            /// assert_eq!(gradguard::kernels::Backend::Avx2.name(), "avx2");
            /// ```
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    Backend::Scalar => "scalar",
                    $(Backend::$name => $text,)*
                }
            }
        }
    };
}

vector_backends!(define_backend!());

impl Backend {
    /// The backend called `name` (as [`Backend::name`] spells it).
    ///
    /// ```
    /// use gradguard::kernels::Backend;
    /// assert_eq!(Backend::from_name("avx512"), Some(Backend::Avx512));
    /// assert_eq!(Backend::from_name("mmx"), None);
    /// ```
    #[must_use]
    pub const fn from_name(name: &str) -> Option<Backend> {
        let mut rest: &[Backend] = Backend::ALL;
        while let Some((&b, tail)) = rest.split_first() {
            if bytes_equal(b.name().as_bytes(), name.as_bytes()) {
                return Some(b);
            }
            rest = tail;
        }
        None
    }
}

const fn bytes_equal(mut a: &[u8], mut b: &[u8]) -> bool {
    loop {
        match (a.split_first(), b.split_first()) {
            (None, None) => return true,
            (Some((x, a_rest)), Some((y, b_rest))) if *x == *y => (a, b) = (a_rest, b_rest),
            _ => return false,
        }
    }
}
