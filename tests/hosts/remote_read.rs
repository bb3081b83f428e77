//! restapi on host 1 serves books that only hosts 2 and 3 hold (no DCN on host 1, so nothing
//! of them is in host 1's shared memory): the remote path, over the LAN, equal to the truth.

use crate::rig::{Rig, books};

#[test]
fn restapi_on_host_1_serves_books_held_only_on_hosts_2_and_3() {
    let Some(rig) = Rig::start(&[2], &[2, 3]) else {
        return;
    };
    let books = books(4);
    rig.create(&books, 2);
    rig.wait_running(&books, 2, &[2, 3]);
    for book in &books {
        rig.assert_served_correctly(rig.restapi(), book);
        // Host 2's restapi reads its own shared memory: the same books, the same truth.
        rig.assert_served_correctly(&rig.restapis[1].process.address, book);
    }
}
