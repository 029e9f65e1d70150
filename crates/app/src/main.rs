//! The `blindsight` command line (work in progress: see the README).
fn main() {
    println!("blindsight: see README.md");
}
