//! The commands, each a function over the engine; the CLI only parses and prints.
