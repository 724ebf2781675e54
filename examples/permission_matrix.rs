//! Prints the admin API's permission matrix (role × route) from the route table, for the
//! README: `cargo run --example permission_matrix`.

fn main() {
    print!("{}", tollgate::control::admin::authz::matrix());
}
