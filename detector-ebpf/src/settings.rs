//! Load-time settings. Userspace writes these read-only globals before load (kernel structure
//! offsets resolved from BTF, tracepoint field offsets from tracefs, the agent's own settings),
//! so each field is a constant to the verifier, which prunes the paths a setting turns off.

use detector_common::{AgentConfig, KernelOffsets, TracepointOffsets};

/// Kernel structure offsets (from BTF, written by userspace before load).
#[no_mangle]
pub(crate) static KOFF: KernelOffsets = KernelOffsets::unset();
/// Tracepoint field offsets (from tracefs, written by userspace before load).
#[no_mangle]
pub(crate) static TPOFF: TracepointOffsets = TracepointOffsets::unset();
/// Agent settings (its own tgid, wakeup threshold…).
#[no_mangle]
pub(crate) static CONFIG: AgentConfig = AgentConfig::unset();

/// Reads one field of a global without letting the compiler fold the pre-load value.
macro_rules! global {
    ($g:ident . $f:ident) => {{
        #[allow(unused_unsafe)]
        // SAFETY: a read through a valid reference to a global; volatile so the load userspace
        // patched stays.
        let v = unsafe { core::ptr::read_volatile(&$g.$f) };
        v
    }};
}
pub(crate) use global;
