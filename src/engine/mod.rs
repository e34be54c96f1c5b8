//! The engine under the families. For now: the geometry every planner shares.

pub(crate) mod geometry;
