"""Every prompt psr sends, in one place.

SEGMENT_PROMPT, STEP_PROMPT and JUDGE_PROMPT are the paper's Figures 3, 4 and 5 word for word.
The figures are typeset in narrow boxes, so their line breaks inside a paragraph are layout, not
text: a paragraph is one line here, and a line break stays where the figure starts a new element
(the bracketed section markers, "Problem:"). tests/test_prompts.py checks each against the paper.
The curly apostrophes of Figure 5 ("A’s") are kept as printed.

Placeholders are filled with str.replace, never str.format: questions are LaTeX and full of braces.
"""

from __future__ import annotations

import re

from psr.core.steps import format_steps

# Figure 3: segmenting a reference solution into steps (IFT data construction).
SEGMENT_PROMPT = (
    "There is a math problem and its corresponding solution. Please divide the given solution into individual "
    'steps logically. Use "Step n: " before each step to distinguish between different steps, where n is a '
    "positive integer starting from 1, representing the current step number. Only divide the steps without "
    "altering any information in the original solution. Please output only the divided solution steps in the "
    "format mentioned above, and do not include any additional information. Do not omit the final answer that "
    "is placed in boxed.\n"
    "[The Start of Question Provided]\n"
    "{question}\n"
    "[The End of Question Provided]\n"
    "[The Start of Solution Provided]\n"
    "{solution}\n"
    "[The End of Solution Provided]"
)

# Figure 4: step-by-step reasoning (the policy's instruction; IFT user turn).
STEP_PROMPT = (
    'Let\'s think step by step and solve the following math problem. Use "Step n: " before each step to '
    "distinguish between different steps, where n is a positive integer starting from 1, representing the "
    "current step number. Put your final answer in boxed.\n"
    "Problem: {problem}"
)

# Figure 5: step-wise pairwise LLM-as-a-Judge (EFT user turn; self-judging in search).
JUDGE_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of two next reasoning steps provided by two AI "
    "assistants to the question and partial reasoning steps displayed below. Your evaluation should consider "
    "correctness and helpfulness. You will be given assistant A’s answer, and assistant B’s answer. Your job is "
    "to evaluate which assistant’s answer is better. You should compare the two responses and provide a "
    "detailed explanation. Avoid any position biases and ensure that the order in which the responses were "
    "presented does not influence your decision. Do not allow the length of the responses to influence your "
    "evaluation. Do not favor certain names of the assistants. Be as objective as possible. After providing "
    'your explanation, output your final verdict by strictly following this format: "[[A]]" if assistant A is '
    'better, and "[[B]]" if assistant B is better.\n'
    "[Question and Intermediate Reasoning Steps Provided]\n"
    "{Question and Partial Reasoning Steps}\n"
    "[The Start of Assistant A’s Next Reasoning Step]\n"
    "{Step A}\n"
    "[The End of Assistant A’s Next Reasoning Step]\n"
    "[The Start of Assistant B’s Next Reasoning Step]\n"
    "{Step B}\n"
    "[The End of Assistant B’s Next Reasoning Step]"
)

# Yuan et al. (2024), Self-Rewarding Language Models, Figure 2: the solution-scoring prompt the
# paper uses for its SRLM baseline ("we use the same prompt template of Yuan et al. (2024)").
SRLM_SCORE_PROMPT = (
    "Review the user's question and the corresponding response using the additive 5-point scoring system "
    "described below. Points are accumulated based on the satisfaction of each criterion:\n\n"
    "- Add 1 point if the response is relevant and provides some information related to the user's inquiry, "
    "even if it is incomplete or contains some irrelevant content.\n"
    "- Add another point if the response addresses a substantial portion of the user's question, but does not "
    "completely resolve the query or provide a direct answer.\n"
    "- Award a third point if the response answers the basic elements of the user's question in a useful way, "
    "regardless of whether it seems to have been written by an AI Assistant or if it has elements typically "
    "found in blogs or search results.\n"
    "- Grant a fourth point if the response is clearly written from an AI Assistant's perspective, addressing "
    "the user's question directly and comprehensively, and is well-organized and helpful, even if there is "
    "slight room for improvement in clarity, conciseness or focus.\n"
    "- Bestow a fifth point for a response that is impeccably tailored to the user's question by an AI "
    "Assistant, without extraneous information, reflecting expert knowledge, and demonstrating a "
    "high-quality, engaging, and insightful answer.\n\n"
    "User: {instruction}\n"
    "<response>{response}</response>\n\n"
    "After examining the user's instruction and the response:\n\n"
    "- Briefly justify your total score, up to 100 words.\n"
    '- Conclude with the score using the format: "Score: <total points>"\n\n'
    "Remember to assess from the AI Assistant perspective, utilizing web search knowledge as necessary. To "
    "evaluate the response in alignment with this additive scoring model, we'll systematically attribute "
    "points based on the outlined criteria."
)

# Qwen2.5-Math's chain-of-thought system prompt, for evaluating base models (`psr eval --prompt qwen-cot`).
QWEN_COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def _fill(template: str, **values: str) -> str:
    for key, val in values.items():
        template = template.replace("{" + key + "}", val)
    return template


def segment_prompt(question: str, solution: str) -> str:
    return _fill(SEGMENT_PROMPT, question=question, solution=solution)


def step_prompt(question: str) -> str:
    return _fill(STEP_PROMPT, problem=question)


def judge_context(question: str, previous_steps: list[str]) -> str:
    """The "{Question and Partial Reasoning Steps}" block: the question, then the steps so far."""
    if not previous_steps:
        return question
    return question + "\n" + format_steps(previous_steps)


def judge_prompt(
    question: str, previous_steps: list[str], step_a: str, step_b: str, step_number: int | None = None
) -> str:
    """Figure 5 filled in. Candidate steps are shown with their ``Step n:`` prefix, as the policy wrote them."""
    n = len(previous_steps) + 1 if step_number is None else step_number
    return (
        JUDGE_PROMPT.replace("{Question and Partial Reasoning Steps}", judge_context(question, previous_steps))
        .replace("{Step A}", f"Step {n}: {step_a}")
        .replace("{Step B}", f"Step {n}: {step_b}")
    )


# Few-shot judging (Table 3's M0 row: the base model judges 3-shot). The paper gives no few-shot template; the
# worked examples go before the Figure 5 prompt in the same user turn (the engines' chats carry one), each a
# filled Figure 5 prompt followed by its judgment, so a base model continues the pattern.
FEW_SHOT_START, FEW_SHOT_END = "[The Start of Example {k}]\n", "\n[The End of Example {k}]\n\n"


def few_shot_judge_prompt(examples: list[tuple[str, str]], prompt: str) -> str:
    """``prompt`` (a filled Figure 5 prompt) after the worked ``examples``: (filled Figure 5 prompt, judgment)."""
    # concatenated, not filled in: a prompt or judgment may itself contain a placeholder's text
    shots = "".join(
        FEW_SHOT_START.replace("{k}", str(k)) + p + "\n" + j + FEW_SHOT_END.replace("{k}", str(k))
        for k, (p, j) in enumerate(examples, 1)
    )
    return shots + prompt


def srlm_score_prompt(question: str, response: str) -> str:
    return _fill(SRLM_SCORE_PROMPT, instruction=step_prompt(question), response=response)


# A verdict is the last "[[A]]" or "[[B]]" in the judgment; a judgment that names both in its final
# position is impossible, so "last wins" is unambiguous. Anything else is no verdict.
_VERDICT = re.compile(r"\[\[([AB])\]\]")


def parse_verdict(judgment: str) -> str | None:
    """'A', 'B', or None when the judgment holds no ``[[A]]``/``[[B]]``."""
    found = _VERDICT.findall(judgment)
    return found[-1] if found else None


_SCORE = re.compile(r"Score:\s*([0-5])(?:\s*/\s*5)?\b")


def parse_score(judgment: str) -> int | None:
    """The 0-5 score of a solution-scoring judgment (last ``Score: n``), or None."""
    found = _SCORE.findall(judgment)
    return int(found[-1]) if found else None
