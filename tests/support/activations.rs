//! The one registry of gradguard's built-in elementwise activations: each test and fuzz
//! target that checks "every activation" takes the list from here, so a new activation is
//! registered once. (The backends' registry is `Backend::ALL` / `Backend::available()`.)

/// Runs `$body` once per built-in elementwise activation, with `$a` bound to it (a value
/// of a different type each time, so `$body` may call generic functions).
///
/// ```ignore
/// each_elementwise!(a => check(a, &z, &dy));
/// ```
macro_rules! each_elementwise {
    ($a:ident => $body:expr) => {{
        {
            let $a = gradguard::Identity;
            $body;
        }
        {
            let $a = gradguard::Sigmoid;
            $body;
        }
        {
            let $a = gradguard::Tanh;
            $body;
        }
        {
            let $a = gradguard::Relu;
            $body;
        }
        {
            let $a = gradguard::LeakyRelu::new(0.2);
            $body;
        }
        {
            let $a = gradguard::Elu::new(1.0);
            $body;
        }
        {
            let $a = gradguard::Softsign;
            $body;
        }
    }};
}
