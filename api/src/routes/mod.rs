//! One module per resource; each exposes `routes()` merged by [`crate::router`].

pub mod health;
pub mod home;
pub mod im;
pub mod living;
pub mod moderation;
pub mod user;
