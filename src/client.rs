//! client placeholder
pub struct Client;
pub struct ClientError;
pub struct Message;
