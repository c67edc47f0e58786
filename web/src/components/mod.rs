//! The components both views share. Each owns its DOM subtree, is built
//! once, and is refreshed in place from the view model with `update`.

pub mod feed;
pub mod log_grid;
pub mod log_strip;
pub mod node_card;
pub mod timeline;

pub use feed::FeedList;
pub use log_grid::LogGrid;
pub use log_strip::LogStrip;
pub use node_card::NodeCard;
pub use timeline::TimelineStrip;
