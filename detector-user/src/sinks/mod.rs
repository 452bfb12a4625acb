//! Alert delivery (delivery issue).
