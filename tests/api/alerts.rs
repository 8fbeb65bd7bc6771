//! Alert evaluation scenarios (issue 6, "What it must show" 2 and 3).
