mod pe;

fn main() {}
