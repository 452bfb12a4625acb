//! Correlation engine: pure, driven by event timestamps (engine issue).
