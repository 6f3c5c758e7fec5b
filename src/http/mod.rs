//! HTTP handlers, one module per resource. Handlers extract, call one service, and shape
//! the response; the rules live in [`crate::service`].

pub mod builds;
pub mod error;
pub mod extract;
pub mod files;
pub mod health;
pub mod indexes;
pub mod mirrors;
pub mod page_cache;
pub mod promotions;
pub mod results;
pub mod simple;
pub mod tokens;
pub mod trash;
pub mod ui;
pub mod upload;
pub mod webhooks;
