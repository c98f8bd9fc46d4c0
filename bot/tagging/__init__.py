"""Tags from bank data and behaviour: import, rules, audiences, segments, sync to WeCom."""
