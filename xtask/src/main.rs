mod lint;
mod pe;

fn main() {}
