//! Network transports: what carries a connection's bytes.
//!
//! Owns the socket side of a connection. Everything that reads, writes, shuts down or
//! (de)registers a socket goes through [`Transport`]; nothing above it touches a raw
//! socket. It never interprets the bytes it carries.

mod transport;

pub use transport::Transport;
