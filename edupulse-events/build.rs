//! `sqlx::migrate!` embeds `migrations/` at compile time, and stable Rust cannot tell cargo to
//! watch those files from the macro: without this, an edited migration is silently not embedded.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
