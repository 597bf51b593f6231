//! Template steps, one file per family. Each step is a typed struct: its fields are the
//! template's JSON fields (unknown fields are errors), [`StepArgs::expand`] says which
//! fields take feature macros, and [`StepArgs::check`] is its part of validation.

pub mod assemble;
pub mod boot;
pub mod devfs;
pub mod digest;
pub mod exec;
pub mod files;
pub mod ids;
pub mod perms;
pub mod pkg;
pub mod shadow;
pub mod smf;
pub mod tar;

pub use exec::{DevfsSetup, Execute, PoolCx, SmfSeeding, StepCx, StepError};

use crate::template::check::{Checker, Expander};

/// What every step type provides to the template language.
pub trait StepArgs: Sized {
    /// A copy with every macro-expanded field expanded.
    fn expand(&self, x: &mut Expander) -> Self;
    /// Problems found without running anything.
    fn check(&self, c: &mut Checker);
}

/// Implements [`StepArgs`] for a step without fields.
macro_rules! no_args_step {
    ($ty:ty $(, targets = $targets:expr)?) => {
        impl $crate::steps::StepArgs for $ty {
            fn expand(&self, _x: &mut $crate::template::check::Expander) -> Self {
                self.clone()
            }
            #[allow(unused_variables)]
            fn check(&self, c: &mut $crate::template::check::Checker) {
                $(c.target_is($targets, <$ty>::NAME);)?
            }
        }
    };
}
pub(crate) use no_args_step;
