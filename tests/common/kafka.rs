//! A real Kafka-protocol broker for tests: tansu (see `../shared/KAFKA.md`),
//! started in memory on a free port, one per test.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub struct Broker {
    child: Child,
    /// Where clients connect (the proxy, when there is one).
    pub addr: String,
    bin: PathBuf,
    /// With [`Broker::start_behind_proxy`]: the broker's own address.
    direct: Option<String>,
    proxy: Option<Proxy>,
}

/// A TCP proxy in front of the broker that can cut every connection, as a
/// network outage or a stopped broker would, without losing the broker's
/// data (tansu keeps it in memory).
struct Proxy {
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(listen: TcpListener, target: String) -> Proxy {
        let cut = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (c, conns) = (cut.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listen.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(clone) = s.try_clone() {
                        list.push(clone);
                    }
                }
                drop(list);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { cut, connections }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for s in self.connections.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Where the tansu binary is: `$TANSU`, `~/.cache/sluice-tools/tansu`
/// (where `.ci/run` installs it), or `tansu` on the PATH.
fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return PathBuf::from(p);
    }
    if let Ok(home) = std::env::var("HOME") {
        let p = PathBuf::from(home).join(".cache/sluice-tools/tansu");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("tansu")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        Broker::start_advertising(port, port)
    }

    /// A broker that clients reach through a proxy ([`Broker::cut`]).
    pub fn start_behind_proxy() -> Broker {
        let listen = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_port = listen.local_addr().unwrap().port();
        let mut broker = Broker::start_advertising(free_port(), proxy_port);
        let direct = broker.addr.clone();
        broker.proxy = Some(Proxy::start(listen, direct.clone()));
        broker.addr = format!("127.0.0.1:{proxy_port}");
        broker.direct = Some(direct);
        broker
    }

    /// Cuts (or restores) every client's connection to the broker.
    pub fn cut(&self, cut: bool) {
        self.proxy
            .as_ref()
            .expect("a broker behind a proxy")
            .set_cut(cut);
    }

    fn start_advertising(port: u16, advertised: u16) -> Broker {
        let bin = tansu();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start the tansu broker ({}): {e}; run .ci/run or set TANSU",
                    bin.display()
                )
            });
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker {
            child,
            addr,
            bin,
            direct: None,
            proxy: None,
        }
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
                "--broker",
                &format!("tcp://{}", self.direct.as_ref().unwrap_or(&self.addr)),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "could not create topic {name}");
    }

    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("linger.ms", "5")
            .create()
            .expect("producer")
    }

    /// Sends (partition, payload) records and waits until all are acked.
    pub fn produce(&self, topic: &str, records: &[(i32, String)]) {
        let producer = self.producer();
        for (partition, payload) in records {
            loop {
                match producer.send(
                    BaseRecord::<(), String>::to(topic)
                        .partition(*partition)
                        .payload(payload),
                ) {
                    Ok(()) => break,
                    Err((_, _)) => {
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Every message of a topic's partitions `0..partitions` as (key,
    /// payload; None for a tombstone), in each partition's order, read until
    /// `quiet` passes without a new one.
    pub fn consume_keyed(
        &self,
        topic: &str,
        partitions: i32,
        quiet: Duration,
    ) -> Vec<(String, Option<String>)> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::Message;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", "sluice-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
        let mut out = Vec::new();
        let mut last = std::time::Instant::now();
        while last.elapsed() < quiet {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                    out.push((text(m.key().unwrap_or_default()), m.payload().map(text)));
                    last = std::time::Instant::now();
                }
                Some(Err(e)) => panic!("consuming {topic}: {e}"),
                None => {}
            }
        }
        out
    }

    /// Every message of a topic's partitions `0..partitions`, from the
    /// beginning, read until `quiet` passes without a new one.
    pub fn consume(&self, topic: &str, partitions: i32, quiet: Duration) -> Vec<String> {
        self.consume_keyed(topic, partitions, quiet)
            .into_iter()
            .map(|(_, payload)| payload.unwrap_or_default())
            .collect()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
