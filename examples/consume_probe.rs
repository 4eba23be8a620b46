use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

fn produce(addr: &str, file: &str) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::io::BufRead;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let f = std::io::BufReader::new(std::fs::File::open(file).unwrap());
    for (i, line) in f.lines().enumerate() {
        let line = line.unwrap();
        let mut r = BaseRecord::<(), String>::to("calls")
            .partition((i % 4) as i32)
            .payload(&line);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300)).unwrap();
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("produce") {
        produce(
            &std::env::args().nth(2).unwrap(),
            &std::env::args().nth(3).unwrap(),
        );
        return;
    }
    let addr = std::env::args().nth(1).unwrap();
    let consumers: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let total: usize = 5_000_000;
    let started = Instant::now();
    let handles: Vec<_> = (0..consumers)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .set("group.id", format!("probe{c}"))
                    .set("enable.auto.commit", "false")
                    .set("enable.partition.eof", "true")
                    .set("fetch.wait.max.ms", "100")
                    .create()
                    .unwrap();
                let mut tpl = TopicPartitionList::new();
                for p in 0..4 {
                    if p % consumers == c {
                        tpl.add_partition_offset("calls", p as i32, Offset::Beginning)
                            .unwrap();
                    }
                }
                consumer.assign(&tpl).unwrap();
                let mut n = 0usize;
                let mut bytes = 0usize;
                let mut eofs = 0;
                let mine = tpl.count();
                while eofs < mine {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(m)) => {
                            n += 1;
                            bytes += m.payload().map(|p| p.len()).unwrap_or(0);
                        }
                        Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eofs += 1,
                        _ => {}
                    }
                }
                (n, bytes)
            })
        })
        .collect();
    let mut n = 0;
    for h in handles {
        n += h.join().unwrap().0;
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "{consumers} consumers: {n} messages in {s:.2}s = {:.0}/s (of {total})",
        n as f64 / s
    );
}
