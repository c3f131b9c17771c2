//! Starts a throw-away Garage S3 server for trying lifeboat (or a benchmark) against S3 by
//! hand: prints the `[repository]` lines for it and serves until stdin closes.
//!
//! ```sh
//! LIFEBOAT_GARAGE_BIN=$(scripts/ensure-garage.sh) \
//!     cargo run -p lifeboat-testing --example garage -- PREFIX SECRET_FILE
//! ```

use std::io::Read;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(prefix), Some(secret)) = (args.next(), args.next()) else {
        eprintln!("usage: garage PREFIX SECRET_FILE (the secret key is written to SECRET_FILE)");
        std::process::exit(2);
    };
    let garage = lifeboat_testing::garage::Garage::start();
    println!(
        "{}",
        garage.repository_toml(&prefix, std::path::Path::new(&secret))
    );
    println!("# serving until stdin closes");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(garage);
}
