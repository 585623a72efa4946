from psr.core.steps import assistant_prefix, format_steps, has_final_answer, parse_steps, strip_step_prefix


def test_format_and_parse_round_trip():
    steps = ["Tom has 3 apples.", "He buys 2 more, so 3 + 2 = 5.", "The answer is \\boxed{5}."]
    assert parse_steps(format_steps(steps)) == steps
    assert assistant_prefix(steps[:2]) == "Step 1: Tom has 3 apples.\nStep 2: He buys 2 more, so 3 + 2 = 5.\n"
    assert assistant_prefix([]) == ""


def test_parse_is_robust():
    text = (
        "Sure, let me solve it.\n\n**Step 1:** x = 2\n  Step 3:   y = x + 1\n\nstill y\n"
        "Step 4. done\nThe answer is \\boxed{3}"
    )
    assert parse_steps(text) == ["x = 2", "y = x + 1\n\nstill y", "done\nThe answer is \\boxed{3}"]
    assert parse_steps("no markers, just \\boxed{1}") == ["no markers, just \\boxed{1}"]
    assert parse_steps("   ") == []
    # "Step" inside a sentence is not a marker.
    assert parse_steps("Step 1: In Step 2: we said so") == ["In Step 2: we said so"]


def test_strip_prefix_and_final():
    assert strip_step_prefix("Step 12: 8 - 3 = 5") == "8 - 3 = 5"
    assert strip_step_prefix(" 8 - 3 = 5 ") == "8 - 3 = 5"
    assert has_final_answer("so the total is \\boxed{12}.")
    assert has_final_answer("The answer is 12.")
    assert not has_final_answer("so 8 - 3 = 5.")
