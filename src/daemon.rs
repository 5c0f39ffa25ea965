//! Wires config, inputs, router and outputs together, and owns shutdown.
