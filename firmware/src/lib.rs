//! Helpers shared by the on-target tests and the footprint binaries: a libtest-style tally
//! over semihosting, stack painting, and the `*_start`/`*_stop` markers that
//! `tools/count-insns.sh` counts instructions between.
#![no_std]

use cortex_m_semihosting::{debug, hprintln};

/// Counts passed and failed checks and prints `test NAME ... ok|FAILED` lines.
pub struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    /// No checks yet.
    pub const fn new() -> Self {
        Tally {
            passed: 0,
            failed: 0,
        }
    }

    /// Records one check.
    pub fn check(&mut self, name: &str, ok: bool) {
        hprintln!("test {} ... {}", name, if ok { "ok" } else { "FAILED" });
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }

    /// Prints the closing line and exits QEMU with the result as status.
    pub fn finish(&self) -> ! {
        let verdict = if self.failed == 0 { "ok" } else { "FAILED" };
        hprintln!(
            "test result: {}. {} passed; {} failed",
            verdict,
            self.passed,
            self.failed
        );
        debug::exit(if self.failed == 0 {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        loop {
            cortex_m::asm::nop();
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

/// Start of RAM on every board used here (mps2-an386/an500 and mps3-an547).
const RAM_ORIGIN: usize = 0x2000_0000;

/// Bytes of stack used by `f` (high-water mark): paints up to 64 KiB below SP with a
/// pattern, runs `f`, then finds the lowest overwritten word. flip-link (the linker here)
/// puts the stack at the bottom of RAM, below `.bss`, so the painted region ends at the
/// RAM origin; without flip-link it ends at `__sheap` (the end of `.bss`).
pub fn stack_used<R>(f: impl FnOnce() -> R) -> (usize, R) {
    const PAINT: u32 = 0xC0DE_C0DE;
    extern "C" {
        static __sheap: u32; // cortex-m-rt: end of .bss/.uninit
    }
    let sp: usize;
    // SAFETY: reads the stack pointer into a register; no memory access.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) sp) };
    let heap_start = core::ptr::addr_of!(__sheap) as usize;
    let floor = if heap_start < sp {
        heap_start
    } else {
        RAM_ORIGIN
    };
    let lo = floor.max(sp.saturating_sub(64 * 1024)) & !3;
    let hi = sp - 32;
    let mut p = lo;
    while p < hi {
        // SAFETY: [lo, hi) is unused stack below the current frame (above .bss, or above
        // the RAM origin with flip-link), word aligned; nothing else runs concurrently.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
    let r = f();
    let mut p = lo;
    // SAFETY: the same region as above, read back.
    while p < hi && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    (sp - p, r)
}

static mut MARK: u32 = 0;

macro_rules! marker {
    ($name:ident, $value:expr) => {
        /// Instruction-count marker (distinct bodies so LLVM cannot merge them).
        #[no_mangle]
        #[inline(never)]
        pub extern "C" fn $name() {
            // SAFETY: a volatile store to a private static, single-threaded.
            unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!(MARK), $value) }
        }
    };
}

marker!(bench_start, 1);
marker!(bench_stop, 2);
marker!(dense_start, 3);
marker!(dense_stop, 4);
marker!(naive_start, 5);
marker!(naive_stop, 6);

/// Installs a HardFault handler that reports and exits with failure instead of spinning
/// until the runner's timeout.
#[macro_export]
macro_rules! hardfault_exits {
    () => {
        #[cortex_m_rt::exception]
        unsafe fn HardFault(ef: &cortex_m_rt::ExceptionFrame) -> ! {
            cortex_m_semihosting::heprintln!("HardFault: {:?}", ef);
            cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
            loop {
                cortex_m::asm::nop();
            }
        }
    };
}
