//! A bare-metal binary with no global allocator that runs gradguard training steps from
//! `static`s. If the crate used `alloc` anywhere, this would fail to link.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use gradguard::init::Init;
use gradguard::{train_step, Dense, Layer, Relu, Seq, Sgd, SoftmaxCrossEntropy, Workspace, Zeroed};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

type Net = Seq![Dense<64, 16, Relu>, Dense<16, 10>];
type Params = <Net as Layer>::Params;

static mut PARAMS: Params = Params::ZEROED;
static mut GRADS: Params = Params::ZEROED;
static mut WORKSPACE: Workspace<Net, 4> = Workspace::ZEROED;
static mut INPUT: [[f32; 64]; 4] = [[0.0; 64]; 4];

/// Entry point (the default one lld looks for).
#[no_mangle]
pub extern "C" fn _start() -> ! {
    // SAFETY: single-threaded bare-metal program, the only code touching these statics.
    #[allow(static_mut_refs)]
    let (params, grads, workspace, x) =
        unsafe { (&mut PARAMS, &mut GRADS, &mut WORKSPACE, &mut INPUT) };
    let net = Net::default();
    net.init(
        params,
        Init::HeNormal,
        &mut Xoshiro256PlusPlus::seed_from_u64(1),
    );
    for (k, v) in x.iter_mut().flatten().enumerate() {
        *v = (k % 17) as f32 / 16.0;
    }
    let mut sgd = match Sgd::new(0.1) {
        Ok(s) => s,
        Err(_) => loop {
            core::hint::spin_loop();
        },
    };
    let labels = [1, 2, 3, 4];
    let mut loss = 0.0;
    for _ in 0..4 {
        if let Ok(l) = train_step(
            &net,
            params,
            grads,
            workspace,
            &mut sgd,
            &SoftmaxCrossEntropy,
            x,
            &labels,
        ) {
            loss = l;
        }
    }
    // Reading the FPU mode must be possible (a no-op returning `Unknown`) on soft-float
    // targets too, where an FPU instruction would fault.
    let mode = gradguard::kernels::subnormal_mode() as u8 as f32;
    // Keep the results observable so nothing is optimised away.
    // SAFETY: INPUT is a valid, aligned static and nothing else accesses it concurrently.
    unsafe {
        core::ptr::write_volatile(core::ptr::addr_of_mut!(INPUT[0][0]), loss);
        core::ptr::write_volatile(core::ptr::addr_of_mut!(INPUT[0][1]), mode);
    }
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
