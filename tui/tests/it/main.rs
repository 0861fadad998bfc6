//! The console's screens, rendered into ratatui's `TestBackend` and compared with reviewed
//! snapshots (insta). Data and the clock are fixed, so nothing volatile reaches the screen.

mod screens;
