//! Where requests may go and how fast: the egress policy (`egress`, with its settings), and each
//! connection's rate limiter (`limiter`) with the line of requests waiting at it (`turns`).
//! Nothing here knows a marketplace's protocol; the marketplaces crate builds its gate on these.

pub mod egress;
pub mod limiter;
pub mod turns;
