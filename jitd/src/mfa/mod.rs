//! Second factors jitd checks for the modules: TOTP codes (`totp`) and one-time break-glass
//! codes for managed admin accounts (`breakglass`). Both keep one root-only record file per
//! person under the state directory and count failures per source (`strikes`), so a stranger's
//! wrong codes cannot lock out the owner.

pub mod breakglass;
pub mod fleet;
pub mod store;
pub mod strikes;
pub mod totp;
