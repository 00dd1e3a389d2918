from bbmn.kinds import row_order


def test_rows_follow_the_registry_with_tagged_rows_after_their_kind_in_natural_order():
    keys = ["zeta10", "probe_random", "probe_pretrained_step7014", "probe_pretrained_step500", "zeta2",
            "probe_pretrained", "probe_pretrained_step1500", "probe_pretrained_step0", "batmannet_pretrained"]
    assert sorted(keys, key=row_order) == [
        "batmannet_pretrained", "probe_pretrained", "probe_pretrained_step0", "probe_pretrained_step500",
        "probe_pretrained_step1500", "probe_pretrained_step7014", "probe_random", "zeta2", "zeta10"]
