//! The template language: typed templates, includes, features and macros, and the one
//! validation pass that runs before anything touches the system.

pub mod check;
pub mod expand;
pub mod features;
pub mod load;
pub mod model;
pub mod plan;
pub mod position;
pub mod problem;
pub mod reference;
pub mod zone;

pub use features::{FeatureError, Features};
pub use load::Target;
pub use model::{Step, StepKind, TargetKind};
pub use plan::{plan, Plan, PlanOptions, PlannedStep};
pub use problem::{Problem, Severity};
