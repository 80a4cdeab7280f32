// The embedded migrations (`sqlx::migrate!`) are read at compile time:
// rebuild when a migration file is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
