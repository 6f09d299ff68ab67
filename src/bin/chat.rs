//! The `chat` program: a two-way chat over the broker, one room per channel.
//!
//! Owns the chat message format, the room commands and the two threads: one prints
//! incoming messages, the other reads stdin and publishes, so incoming lines never wait
//! for typing. It speaks the protocol only through `pubsub::Client`.

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use pubsub::cli::{self, ConnectArgs};
use pubsub::protocol::validate_publish;
use pubsub::{Client, Hello, Message};
use serde::{Deserialize, Serialize};

/// Rooms are the channels under this prefix: room `lobby` is channel `chat.lobby`.
const ROOM_PREFIX: &str = "chat.";

/// The room joined when no `--room` is given.
const DEFAULT_ROOM: &str = "lobby";

const EXAMPLES: &str = "\
Examples:
  chat --name alice --room lobby          in one terminal
  chat --name bob --room lobby            in another; type a line and press Enter
  chat --name carol --room lobby --room dev
  printf 'hello\\n' | chat --name bot     send from a script (EOF on stdin quits)

Commands (type them on stdin):
  /join ROOM    join ROOM and make it the room your lines go to
  /leave [ROOM] leave ROOM (default: the current room)
  /rooms        list the rooms you are in
  /quit         leave the chat (so does end of input, Ctrl-D)
  /help         this list
  //text        send a line that starts with `/`

Rooms are channels: room ROOM is channel `chat.ROOM`, so `client sub 'chat.>'` watches
every room. Each line is published as a JSON object,
  {\"sender\":\"alice\",\"text\":\"hello\",\"time\":\"2024-05-01T12:34:56.789Z\"}
and shown to the others as `[12:34:56] alice: hello` (UTC). When you are in several
rooms, lines are prefixed with their room: `#dev [12:34:56] alice: hello`. Your own lines
are not echoed back. Status lines (`* joined lobby`) go to stderr, chat lines to stdout.

Exit status: 0 on /quit or end of input, 1 when the broker is unreachable or closes
the connection, 2 on bad arguments.";

/// Chat with others through a pubsub broker.
#[derive(Debug, Parser)]
#[command(name = "chat", version, after_help = EXAMPLES)]
struct Args {
    #[command(flatten)]
    connect: ConnectArgs,

    /// Your name, shown to the others [default: $USER].
    #[arg(long)]
    name: Option<String>,

    /// Room to join; repeat for several. Your lines go to the last one joined
    /// [default: lobby].
    #[arg(long = "room", value_name = "ROOM")]
    rooms: Vec<String>,
}

/// A chat line on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct ChatLine {
    sender: String,
    text: String,
    /// RFC 3339, UTC.
    time: String,
}

/// What the input side does with one line of stdin.
enum Next {
    Continue,
    Quit,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let name = match args.name {
        Some(n) => n,
        None => std::env::var("USER").unwrap_or_else(|_| "anonymous".to_string()),
    };
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err("--name must not be empty".to_string());
    }
    let mut rooms = args.rooms;
    if rooms.is_empty() {
        rooms.push(DEFAULT_ROOM.to_string());
    }
    for room in &rooms {
        check_room(room)?;
    }

    // echo: false, so the broker never sends our own lines back.
    let hello = Hello::new().name(name.clone()).echo(false);
    let (client, _welcome) = cli::connect(&args.connect, hello)?;
    eprintln!(
        "* connected to {} as {name}; type /help for commands",
        args.connect.addr
    );

    let mut chat = Chat {
        client: client.clone(),
        name,
        rooms: Vec::new(),
        joined: Arc::new(AtomicUsize::new(0)),
    };
    for room in &rooms {
        chat.join(room)?;
    }

    let quitting = Arc::new(AtomicBool::new(false));
    {
        let joined = Arc::clone(&chat.joined);
        let quitting = Arc::clone(&quitting);
        std::thread::Builder::new()
            .name("chat-incoming".into())
            .spawn(move || show_incoming(client, joined, quitting))
            .map_err(|e| format!("cannot start the reader thread: {e}"))?;
    }

    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read stdin: {e}")),
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if let Next::Quit = chat.handle(line)? {
            break;
        }
    }
    // Every line was acknowledged by the broker before we read the next one, so
    // nothing typed is lost by leaving now.
    quitting.store(true, Ordering::SeqCst);
    chat.client.close();
    Ok(())
}

/// The input side's state.
struct Chat {
    client: Client,
    name: String,
    /// Joined rooms in join order; the last one is where lines go.
    rooms: Vec<String>,
    /// How many rooms are joined, for the reader thread's room prefix.
    joined: Arc<AtomicUsize>,
}

impl Chat {
    fn handle(&mut self, line: &str) -> Result<Next, String> {
        if line.trim().is_empty() {
            return Ok(Next::Continue);
        }
        if let Some(text) = line.strip_prefix("//") {
            self.send(&format!("/{text}"))?;
            return Ok(Next::Continue);
        }
        let Some(command) = line.strip_prefix('/') else {
            self.send(line)?;
            return Ok(Next::Continue);
        };
        let mut words = command.split_whitespace();
        let verb = words.next().unwrap_or("");
        let arg = words.next();
        match (verb, arg) {
            ("quit" | "exit", _) => return Ok(Next::Quit),
            ("join", Some(room)) => match check_room(room) {
                Ok(()) => self.join(room)?,
                Err(e) => eprintln!("* {e}"),
            },
            ("join", None) => eprintln!("* usage: /join ROOM"),
            ("leave" | "part", room) => {
                let room = room
                    .map(str::to_string)
                    .or_else(|| self.rooms.last().cloned());
                match room {
                    Some(room) => self.leave(&room)?,
                    None => eprintln!("* you are not in any room"),
                }
            }
            ("rooms", _) => match self.rooms.last() {
                Some(current) => eprintln!(
                    "* rooms: {} (your lines go to {current})",
                    self.rooms.join(", ")
                ),
                None => eprintln!("* you are not in any room"),
            },
            ("help", _) => eprintln!(
                "* commands: /join ROOM, /leave [ROOM], /rooms, /quit, //text sends /text"
            ),
            _ => eprintln!("* unknown command /{verb} (try /help)"),
        }
        Ok(Next::Continue)
    }

    /// Subscribes to a room and makes it current.
    fn join(&mut self, room: &str) -> Result<(), String> {
        self.client
            .subscribe(&channel_of(room))
            .map_err(|e| format!("cannot join {room}: {}", cli::describe(&e)))?;
        self.rooms.retain(|r| r != room);
        self.rooms.push(room.to_string());
        self.joined.store(self.rooms.len(), Ordering::SeqCst);
        eprintln!("* joined {room}");
        Ok(())
    }

    fn leave(&mut self, room: &str) -> Result<(), String> {
        if !self.rooms.iter().any(|r| r == room) {
            eprintln!("* you are not in {room}");
            return Ok(());
        }
        self.client
            .unsubscribe(&channel_of(room))
            .map_err(|e| format!("cannot leave {room}: {}", cli::describe(&e)))?;
        self.rooms.retain(|r| r != room);
        self.joined.store(self.rooms.len(), Ordering::SeqCst);
        match self.rooms.last() {
            Some(current) => eprintln!("* left {room}; your lines now go to {current}"),
            None => eprintln!("* left {room}; /join a room to talk"),
        }
        Ok(())
    }

    /// Publishes a line to the current room and waits for the broker's ack.
    fn send(&self, text: &str) -> Result<(), String> {
        let Some(room) = self.rooms.last() else {
            eprintln!("* you are not in any room; /join ROOM first");
            return Ok(());
        };
        let line = ChatLine {
            sender: self.name.clone(),
            text: text.to_string(),
            time: cli::rfc3339_utc(cli::now_ms()),
        };
        match self.client.publish(&channel_of(room), &line) {
            Ok(_) => Ok(()),
            // The broker refused this one line; the connection still works.
            Err(e @ pubsub::ClientError::Broker { .. }) => {
                eprintln!("* not sent: {}", cli::describe(&e));
                Ok(())
            }
            Err(e) => Err(cli::describe(&e)),
        }
    }
}

/// The reader thread: prints every incoming line until the connection ends.
fn show_incoming(client: Client, joined: Arc<AtomicUsize>, quitting: Arc<AtomicBool>) {
    loop {
        match client.recv() {
            Ok(message) => {
                let show_room = joined.load(Ordering::SeqCst) > 1;
                cli::print_line(&format_incoming(&message, show_room));
            }
            Err(e) => {
                if quitting.load(Ordering::SeqCst) {
                    return;
                }
                eprintln!("chat: {}", cli::describe(&e));
                std::process::exit(1);
            }
        }
    }
}

/// `[12:34:56] bob: text`, prefixed with `#room ` when `show_room`. Messages that are
/// not chat lines (someone used `client pub chat.lobby ...`) are shown with sender `?`.
fn format_incoming(message: &Message, show_room: bool) -> String {
    let (sender, text, time) = match message.json::<ChatLine>() {
        Ok(line) => (line.sender, line.text, clock_of(&line.time)),
        Err(_) => ("?".to_string(), message.text(), None),
    };
    let time = time.unwrap_or_else(|| cli::hms_utc(cli::now_ms()));
    let line = format!("[{time}] {}: {}", printable(&sender), printable(&text));
    if show_room {
        let room = message
            .channel
            .strip_prefix(ROOM_PREFIX)
            .unwrap_or(&message.channel);
        format!("#{room} {line}")
    } else {
        line
    }
}

/// `HH:MM:SS` from an RFC 3339 time, when it is one.
fn clock_of(time: &str) -> Option<String> {
    let clock = time.get(11..19)?;
    let looks_right = time.as_bytes().get(10) == Some(&b'T')
        && clock.bytes().enumerate().all(|(i, b)| {
            if i == 2 || i == 5 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        });
    looks_right.then(|| clock.to_string())
}

/// Replaces control characters so one message stays one terminal line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn channel_of(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

/// A room must make a channel one can publish on: no wildcards, no spaces, no empty
/// `.`-separated parts.
fn check_room(room: &str) -> Result<(), String> {
    validate_publish(&channel_of(room)).map_err(|e| format!("bad room name '{room}': {e}"))
}
