"""What the emulated model "writes": lecture plans and render chunks.

Everything here is a pure function of the request, so the same request always gets the same
reply. Choices are seeded from a hash of the request JSON, never from global random state.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

#: Marks the line of the prompt that carries the machine-readable request.
REQUEST_MARKER = "REQUEST_JSON:"
#: Generous bound: the service caps lectures far lower, but the emulator should not be the
#: component that enforces the product's limit.
MAX_PLAN_STEPS = 100

Audience = Literal["beginner", "intermediate", "advanced"]
Language = Literal["python", "javascript", "typescript", "java", "cpp", "go"]
TASKS = ("plan", "step")


class RequestError(ValueError):
    """The prompt does not hold a usable request; the server answers 400 INVALID_ARGUMENT."""


class _Request(BaseModel):
    # Extra fields are ignored: the real model would not refuse them either.
    model_config = ConfigDict(extra="ignore", frozen=True)


class PlanRequest(_Request):
    """Ask for a lecture plan."""

    task: Literal["plan"]
    topic: Annotated[str, Field(min_length=1)]
    audience: Audience = "intermediate"
    max_steps: Annotated[int, Field(strict=True, ge=1, le=MAX_PLAN_STEPS)]
    language: Language = "python"


class StepSpec(_Request):
    """The plan step a render chunk is asked for."""

    index: Annotated[int, Field(strict=True, ge=1)]
    title: Annotated[str, Field(min_length=1)]
    objective: str = ""


class StepRequest(_Request):
    """Ask for the render chunk of one plan step."""

    task: Literal["step"]
    topic: Annotated[str, Field(min_length=1)]
    audience: Audience = "intermediate"
    language: Language = "python"
    plan_title: str = ""
    step: StepSpec
    total_steps: Annotated[int, Field(strict=True, ge=1)] = 1


TaskRequest = Annotated[PlanRequest | StepRequest, Field(discriminator="task")]
_TASK_ADAPTER: TypeAdapter[PlanRequest | StepRequest] = TypeAdapter(TaskRequest)


def extract_request(prompt: str) -> PlanRequest | StepRequest:
    """Find and validate the single ``REQUEST_JSON: {...}`` line of a prompt.

    Args:
        prompt: All user text of the generateContent call, parts joined by newlines.

    Returns:
        The validated plan or step request.

    Raises:
        RequestError: No such line, more than one, bad JSON, unknown task or invalid fields.
    """
    lines = [line.strip() for line in prompt.splitlines()]
    found = [line for line in lines if line.startswith(REQUEST_MARKER)]
    if len(found) != 1:
        raise RequestError(
            f"the prompt must contain exactly one line starting with {REQUEST_MARKER!r}, "
            f"found {len(found)}"
        )
    payload = found[0][len(REQUEST_MARKER) :].strip()
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise RequestError(f"{REQUEST_MARKER} is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise RequestError(f"{REQUEST_MARKER} must be a JSON object")
    task = data.get("task")
    if task not in TASKS:
        raise RequestError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    try:
        return _TASK_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'request'}: {error['msg']}"
            for error in exc.errors()
        )
        raise RequestError(f"invalid {task} request: {problems}") from None


def request_rng(request: PlanRequest | StepRequest) -> random.Random:
    """A generator seeded from the request's canonical JSON, so replies are reproducible."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _short(text: str, limit: int = 120) -> str:
    # Titles and texts must stay inside the contract's bounds even for very long topics.
    if len(text) <= limit:
        return text
    return " ".join(text.split())[: limit - 1].rstrip() + "…"


# --- Plans ---

_OPENING_TITLES = (
    "What problem {topic} solves",
    "The core idea",
    "Walking through an example",
    "Writing the code",
    "Complexity and pitfalls",
)
_EXTRA_TITLES = (
    "Edge cases",
    "Variations",
    "Practice problem",
    "Common mistakes",
    "Testing the code",
    "Real-world uses",
    "Comparing alternatives",
    "Debugging tips",
    "Interview questions",
    "Performance tuning",
    "Further reading",
)
_CLOSING_TITLE = "Recap"

_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "What problem {topic} solves": (
        "Explain the problem {topic} addresses and when a {audience} developer reaches for it.",
        "Motivate {topic} with a concrete situation where the naive approach is too slow.",
    ),
    "The core idea": (
        "Describe the key insight behind {topic} in plain words before any code.",
        "Build an intuition for how {topic} narrows the work at every step.",
    ),
    "Walking through an example": (
        "Trace {topic} by hand on a small input, one step at a time.",
        "Follow a concrete input through {topic} and watch the state change.",
    ),
    "Writing the code": (
        "Implement {topic} in {language} and connect each line to the idea.",
        "Turn the idea of {topic} into a short, readable {language} function.",
    ),
    "Complexity and pitfalls": (
        "Analyse the time and space cost of {topic} and the classic off-by-one traps.",
        "Reason about how {topic} scales and where implementations usually break.",
    ),
    _CLOSING_TITLE: (
        "Summarise what was learned about {topic} and what to study next.",
        "Pull the lecture on {topic} together in a few memorable points.",
    ),
}
_GENERIC_OBJECTIVES = (
    "Work through {title_lower} for {topic} with a worked {language} example.",
    "Apply {topic} to {title_lower} and check the result carefully.",
)
_PLAN_TITLES: dict[str, tuple[str, ...]] = {
    "beginner": ("{topic} from the ground up", "A gentle introduction to {topic}"),
    "intermediate": ("Understanding {topic}", "{topic}: a practical walkthrough"),
    "advanced": ("{topic} in depth", "Mastering {topic}: details and trade-offs"),
}
_LANGUAGE_NAMES: dict[str, str] = {
    "python": "Python",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "java": "Java",
    "cpp": "C++",
    "go": "Go",
}


def plan_titles(topic: str, max_steps: int) -> list[str]:
    """Step titles for a plan of ``max_steps`` steps, unique and in teaching order.

    Args:
        topic: The lecture topic (shortened where it is spliced into a title).
        max_steps: How many steps the plan must have.

    Returns:
        Exactly ``max_steps`` distinct titles.
    """
    opening = [title.format(topic=_short(topic)) for title in _OPENING_TITLES]
    if max_steps <= len(opening):
        return opening[:max_steps]
    middle_count = max_steps - len(opening) - 1
    middle = list(_EXTRA_TITLES[:middle_count])
    # Past the named pool, numbered practice problems keep the titles unique.
    for number in range(2, middle_count - len(middle) + 2):
        middle.append(f"Practice problem {number}")
    return [*opening, *middle, _CLOSING_TITLE]


def build_plan(request: PlanRequest) -> dict[str, Any]:
    """Write the plan JSON for a plan request.

    Args:
        request: The validated plan request.

    Returns:
        ``{"title": str, "steps": [{"index", "title", "objective"}, ...]}`` with exactly
        ``request.max_steps`` steps indexed 1..N.
    """
    rng = request_rng(request)
    topic = _short(request.topic)
    fields = {
        "topic": topic,
        "audience": request.audience,
        "language": _LANGUAGE_NAMES[request.language],
    }
    title = rng.choice(_PLAN_TITLES[request.audience]).format(**fields)
    steps = []
    for index, step_title in enumerate(plan_titles(request.topic, request.max_steps), start=1):
        template_key = _OPENING_TITLES[0] if index == 1 else step_title
        templates = _OBJECTIVES.get(template_key, _GENERIC_OBJECTIVES)
        objective = rng.choice(templates).format(title_lower=step_title.lower(), **fields)
        steps.append({"index": index, "title": step_title, "objective": objective})
    return {"title": title, "steps": steps}


# --- Render chunks ---

CodeKind = Literal["solve", "trace", "check"]


def code_kind(step_title: str) -> CodeKind:
    """Which kind of listing suits a step, judged from its title."""
    lowered = step_title.lower()
    if re.search(r"example|walk|trace|recap|idea", lowered):
        return "trace"
    if re.search(r"edge|test|mistake|pitfall|debug|practice|interview", lowered):
        return "check"
    return "solve"


def _source_literal(text: str) -> str:
    """A double-quoted literal valid in JavaScript, TypeScript, Java, C++ and Go.

    Control characters, surrogates and line/paragraph separators are dropped first: JSON
    escaping is then a valid escape syntax in all five languages.
    """
    kept = "".join(
        char
        for char in text
        if unicodedata.category(char) not in ("Cc", "Cs", "Zl", "Zp") and char != "\ufeff"
    )
    return json.dumps(kept, ensure_ascii=False)


# Listings use string.Template ($name) because the code itself is full of braces. Topic and
# step title only ever appear through $topic/$step, which are escaped literals, never comments.
_PYTHON: dict[CodeKind, str] = {
    "solve": '''TOPIC = $topic
STEP = $step


def $fn(values: list[int], target: int) -> int:
    """Return the index of target in the sorted values, or -1 when it is absent."""
    low, high = 0, len(values) - 1
    while low <= high:
        middle = (low + high) // 2
        if values[middle] == target:
            return middle
        if values[middle] < target:
            low = middle + 1
        else:
            high = middle - 1
    return -1


if __name__ == "__main__":
    print(TOPIC, "-", STEP, "->", $fn($values, $target))
''',
    "trace": '''TOPIC = $topic
STEP = $step


def $fn(values: list[int]) -> list[str]:
    """Describe every element together with the running total so far."""
    lines = []
    total = 0
    for position, value in enumerate(values):
        total += value
        lines.append(f"{position}: value={value} total={total}")
    return lines


for line in $fn($values):
    print(TOPIC, STEP, line)
''',
    "check": '''TOPIC = $topic
STEP = $step


def $fn(values: list[int]) -> int | None:
    """Return the largest value, or None for an empty list."""
    if not values:
        return None
    best = values[0]
    for value in values[1:]:
        if value > best:
            best = value
    return best


assert $fn([]) is None
assert $fn([$target]) == $target
assert $fn($values) == $largest
print(TOPIC, STEP, "all checks passed")
''',
}

_JAVASCRIPT: dict[CodeKind, str] = {
    "solve": """const TOPIC = $topic;
const STEP = $step;

function $fn(values, target) {
  let low = 0;
  let high = values.length - 1;
  while (low <= high) {
    const middle = Math.floor((low + high) / 2);
    if (values[middle] === target) return middle;
    if (values[middle] < target) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}

console.log(TOPIC, "-", STEP, "->", $fn($values, $target));
""",
    "trace": """const TOPIC = $topic;
const STEP = $step;

function $fn(values) {
  const lines = [];
  let total = 0;
  values.forEach((value, position) => {
    total += value;
    lines.push(position + ": value=" + value + " total=" + total);
  });
  return lines;
}

for (const line of $fn($values)) console.log(TOPIC, STEP, line);
""",
    "check": """const TOPIC = $topic;
const STEP = $step;

function $fn(values) {
  if (values.length === 0) return null;
  let best = values[0];
  for (const value of values.slice(1)) {
    if (value > best) best = value;
  }
  return best;
}

console.assert($fn([]) === null);
console.assert($fn([$target]) === $target);
console.assert($fn($values) === $largest);
console.log(TOPIC, STEP, "all checks passed");
""",
}

_TYPESCRIPT: dict[CodeKind, str] = {
    "solve": """const TOPIC: string = $topic;
const STEP: string = $step;

function $fn(values: number[], target: number): number {
  let low = 0;
  let high = values.length - 1;
  while (low <= high) {
    const middle = Math.floor((low + high) / 2);
    if (values[middle] === target) return middle;
    if (values[middle] < target) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}

console.log(TOPIC, "-", STEP, "->", $fn($values, $target));
""",
    "trace": """const TOPIC: string = $topic;
const STEP: string = $step;

function $fn(values: number[]): string[] {
  const lines: string[] = [];
  let total = 0;
  values.forEach((value, position) => {
    total += value;
    lines.push(position + ": value=" + value + " total=" + total);
  });
  return lines;
}

for (const line of $fn($values)) console.log(TOPIC, STEP, line);
""",
    "check": """const TOPIC: string = $topic;
const STEP: string = $step;

function $fn(values: number[]): number | null {
  if (values.length === 0) return null;
  let best = values[0];
  for (const value of values.slice(1)) {
    if (value > best) best = value;
  }
  return best;
}

console.assert($fn([]) === null);
console.assert($fn([$target]) === $target);
console.assert($fn($values) === $largest);
console.log(TOPIC, STEP, "all checks passed");
""",
}

_JAVA: dict[CodeKind, str] = {
    "solve": """public class Lesson {
    static final String TOPIC = $topic;
    static final String STEP = $step;

    static int $fn(int[] values, int target) {
        int low = 0;
        int high = values.length - 1;
        while (low <= high) {
            int middle = low + (high - low) / 2;
            if (values[middle] == target) return middle;
            if (values[middle] < target) low = middle + 1;
            else high = middle - 1;
        }
        return -1;
    }

    public static void main(String[] args) {
        int[] values = {$items};
        System.out.println(TOPIC + " - " + STEP + " -> " + $fn(values, $target));
    }
}
""",
    "trace": """public class Lesson {
    static final String TOPIC = $topic;
    static final String STEP = $step;

    static void $fn(int[] values) {
        int total = 0;
        for (int position = 0; position < values.length; position++) {
            total += values[position];
            System.out.println(position + ": value=" + values[position] + " total=" + total);
        }
    }

    public static void main(String[] args) {
        System.out.println(TOPIC + " - " + STEP);
        $fn(new int[] {$items});
    }
}
""",
    "check": """import java.util.OptionalInt;

public class Lesson {
    static final String TOPIC = $topic;
    static final String STEP = $step;

    static OptionalInt $fn(int[] values) {
        if (values.length == 0) return OptionalInt.empty();
        int best = values[0];
        for (int value : values) {
            if (value > best) best = value;
        }
        return OptionalInt.of(best);
    }

    public static void main(String[] args) {
        if ($fn(new int[] {}).isPresent()) throw new AssertionError("empty");
        if ($fn(new int[] {$items}).getAsInt() != $largest) throw new AssertionError("max");
        System.out.println(TOPIC + " - " + STEP + ": all checks passed");
    }
}
""",
}

_CPP: dict[CodeKind, str] = {
    "solve": """#include <iostream>
#include <string>
#include <vector>

const std::string TOPIC = $topic;
const std::string STEP = $step;

int $fn(const std::vector<int>& values, int target) {
    int low = 0;
    int high = static_cast<int>(values.size()) - 1;
    while (low <= high) {
        int middle = low + (high - low) / 2;
        if (values[middle] == target) return middle;
        if (values[middle] < target) low = middle + 1;
        else high = middle - 1;
    }
    return -1;
}

int main() {
    std::vector<int> values{$items};
    std::cout << TOPIC << " - " << STEP << " -> " << $fn(values, $target) << std::endl;
    return 0;
}
""",
    "trace": """#include <iostream>
#include <string>
#include <vector>

const std::string TOPIC = $topic;
const std::string STEP = $step;

void $fn(const std::vector<int>& values) {
    int total = 0;
    for (std::size_t position = 0; position < values.size(); ++position) {
        total += values[position];
        std::cout << position << ": value=" << values[position] << " total=" << total << "\\n";
    }
}

int main() {
    std::cout << TOPIC << " - " << STEP << std::endl;
    $fn(std::vector<int>{$items});
    return 0;
}
""",
    "check": """#include <cassert>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

const std::string TOPIC = $topic;
const std::string STEP = $step;

std::optional<int> $fn(const std::vector<int>& values) {
    if (values.empty()) return std::nullopt;
    int best = values.front();
    for (int value : values) {
        if (value > best) best = value;
    }
    return best;
}

int main() {
    assert(!$fn({}).has_value());
    assert($fn({$items}).value() == $largest);
    std::cout << TOPIC << " - " << STEP << ": all checks passed" << std::endl;
    return 0;
}
""",
}

_GO: dict[CodeKind, str] = {
    "solve": """package main

import "fmt"

const topic = $topic
const step = $step

func $fn(values []int, target int) int {
	low, high := 0, len(values)-1
	for low <= high {
		middle := low + (high-low)/2
		if values[middle] == target {
			return middle
		}
		if values[middle] < target {
			low = middle + 1
		} else {
			high = middle - 1
		}
	}
	return -1
}

func main() {
	fmt.Println(topic, "-", step, "->", $fn([]int{$items}, $target))
}
""",
    "trace": """package main

import "fmt"

const topic = $topic
const step = $step

func $fn(values []int) {
	total := 0
	for position, value := range values {
		total += value
		fmt.Printf("%d: value=%d total=%d\\n", position, value, total)
	}
}

func main() {
	fmt.Println(topic, "-", step)
	$fn([]int{$items})
}
""",
    "check": """package main

import "fmt"

const topic = $topic
const step = $step

func $fn(values []int) (int, bool) {
	if len(values) == 0 {
		return 0, false
	}
	best := values[0]
	for _, value := range values {
		if value > best {
			best = value
		}
	}
	return best, true
}

func main() {
	if _, ok := $fn(nil); ok {
		panic("empty input must report no maximum")
	}
	if best, _ := $fn([]int{$items}); best != $largest {
		panic("wrong maximum")
	}
	fmt.Println(topic, "-", step, ": all checks passed")
}
""",
}

_LISTINGS: dict[str, dict[CodeKind, str]] = {
    "python": _PYTHON,
    "javascript": _JAVASCRIPT,
    "typescript": _TYPESCRIPT,
    "java": _JAVA,
    "cpp": _CPP,
    "go": _GO,
}
_FUNCTION_NAMES: dict[CodeKind, tuple[str, str]] = {
    # (snake_case, camelCase), used according to each language's convention.
    "solve": ("find_position", "findPosition"),
    "trace": ("trace_values", "traceValues"),
    "check": ("largest_value", "largestValue"),
}
# The statement a highlight action points at, per kind of listing.
_KEY_STATEMENTS: dict[CodeKind, tuple[str, ...]] = {
    "solve": ("while", "for low"),
    "trace": ("total +=",),
    "check": ("> best",),
}


def build_code(
    language: Language, kind: CodeKind, topic: str, step_title: str, values: list[int]
) -> str:
    """Write a short listing in ``language`` for a step.

    Args:
        language: Target language.
        kind: Which listing to write (see :func:`code_kind`).
        topic: Lecture topic; only ever embedded as an escaped string literal.
        step_title: Step title; only ever embedded as an escaped string literal.
        values: The sorted example values the listing works on (at least one).

    Returns:
        Source code. For Python it always parses with ``ast.parse``.
    """
    snake, camel = _FUNCTION_NAMES[kind]
    if language == "python":
        # repr() of a str is always a valid Python literal, whatever the topic holds.
        topic_literal, step_literal = repr(topic), repr(step_title)
        values_literal = repr(values)
    else:
        topic_literal, step_literal = _source_literal(topic), _source_literal(step_title)
        if language == "cpp":
            # "??=" and friends are trigraphs in older C++; "\?" is a plain question mark.
            topic_literal = topic_literal.replace("?", "\\?")
            step_literal = step_literal.replace("?", "\\?")
        values_literal = "[" + ", ".join(str(value) for value in values) + "]"
    return string.Template(_LISTINGS[language][kind]).substitute(
        topic=topic_literal,
        step=step_literal,
        fn=snake if language in ("python", "cpp") else camel,
        values=values_literal,
        items=", ".join(str(value) for value in values),
        target=str(values[len(values) // 2]),
        largest=str(max(values)),
    )


def _key_line(code: str, kind: CodeKind) -> int:
    for number, line in enumerate(code.splitlines(), start=1):
        if any(token in line for token in _KEY_STATEMENTS[kind]):
            return number
    return 1


_AUDIENCE_SENTENCES: dict[str, tuple[str, ...]] = {
    "beginner": (
        "We go slowly and name every moving part.",
        "No prior experience is assumed, so each idea gets a picture first.",
    ),
    "intermediate": (
        "We focus on the reasoning you can reuse in your own code.",
        "Keep an eye on how the invariant is preserved at each move.",
    ),
    "advanced": (
        "We pay attention to the trade-offs and the corner cases that bite in production.",
        "Watch for the subtle boundary conditions, they are where proofs usually fail.",
    ),
}


def build_chunk(request: StepRequest) -> dict[str, Any]:
    """Write the render chunk JSON for a step request.

    Args:
        request: The validated step request.

    Returns:
        ``{"title": <step title>, "narration": str, "actions": [...]}`` with 4-8 actions,
        always a ``say`` and a ``code`` action, code in the requested language.
    """
    rng = request_rng(request)
    step = request.step
    kind = code_kind(step.title)
    values = sorted(rng.sample(range(1, 60), rng.randint(6, 9)))
    code = build_code(request.language, kind, request.topic, step.title, values)
    target = values[len(values) // 2]

    sentences = [
        f"In step {step.index} of {request.total_steps} on {_short(request.topic, 300)}, "
        f"we turn to “{step.title}”.",
        _short(step.objective.strip(), 1000)
        or f"The goal is to see how {_short(step.title, 200).lower()} fits in.",
        rng.choice(_AUDIENCE_SENTENCES[request.audience]),
    ]
    if rng.random() < 0.5:
        sentences.append(f"By the end, {_short(step.title, 200).lower()} should feel natural.")
    narration = " ".join(sentences)

    actions: list[dict[str, Any]] = [{"type": "say", "text": " ".join(sentences[:2])}]
    if rng.random() < 0.7:
        actions.append({"type": "write", "text": _short(step.title, 200)})
    if rng.random() < 0.7:
        actions.append({"type": "array", "values": [str(v) for v in values], "label": "values"})
        actions.append(
            {
                "type": "highlight",
                "target": f"values[{values.index(target)}]",
                "note": f"the value {target} we follow through the code",
            }
        )
    actions.append({"type": "code", "language": request.language, "code": code})
    actions.append(
        {
            "type": "highlight",
            "target": f"line {_key_line(code, kind)}",
            "note": "this is the line that does the real work",
        }
    )
    if rng.random() < 0.5:
        actions.append({"type": "pause", "seconds": rng.choice((0.5, 1.0, 1.5, 2.0))})
    actions.append({"type": "say", "text": sentences[-1]})
    return {"title": step.title, "narration": narration, "actions": actions}


def build_reply(request: PlanRequest | StepRequest) -> dict[str, Any]:
    """The reply JSON for any request: a plan or a render chunk."""
    if isinstance(request, PlanRequest):
        return build_plan(request)
    return build_chunk(request)
