//! The engine under the families: the device ([`device`]), WGSL modules, layouts and the
//! pipeline cache ([`pipelines`], [`shaders`]), the geometry every planner shares
//! ([`geometry`]), the one recorder ([`program`]) with the likelihood module's shared planners
//! ([`passes`]), the one blocking runner ([`blocking`]) with the host memory of its results
//! ([`host`]) and its copies on GL ([`gl_direct`]), and the shape every op has ([`op`]).
//!
//! No file here names a family module: a family lowers its work to a [`program::Program`]
//! and runs it through [`blocking`] (`tests/walls.rs` reads the sources).

pub(crate) mod blocking;
pub(crate) mod device;
pub(crate) mod geometry;
pub(crate) mod gl_direct;
pub(crate) mod host;
pub(crate) mod op;
pub(crate) mod passes;
pub(crate) mod pipelines;
pub(crate) mod program;
pub(crate) mod shaders;
