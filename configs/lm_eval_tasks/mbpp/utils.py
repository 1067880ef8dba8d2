# Reproduces lm-evaluation-harness 82a99365abdc801a11d41095182a4da506591aec, lm_eval/tasks/mbpp/utils.py, but for
# pass@1: there `evaluate`'s code_eval (fetched from the hub on import, then run on the generated programs with no
# sandbox); here the lab's code checker (rewards, task=code): the program + the task's asserts run once in the lab's
# sandbox (rewards/README.md, "Sandbox"), passing iff they run to their end, with the same 3 s limit. The few-shot
# examples are the harness's, unchanged.
from rewards import score_samples


def pass_at_1(references, predictions):
    """code_eval's `compute(references, [predictions], k=[1])[0]["pass@1"]`: the share of `predictions` (this
    document's programs) that pass `references[0]` (its asserts)."""
    verdicts = score_samples("code", [references[0]] * len(predictions), list(predictions))
    return sum(v.status == "correct" for v in verdicts) / len(verdicts) if verdicts else 0.0


def list_fewshot_samples():
    return [
        {
            "task_id": 2,
            "text": "Write a function to find the similar elements from the given two tuple lists.",
            "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & set(test_tup2))\r\n  return (res) ",
            "test_list": [
                "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
                "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
                "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
            ],
            "is_fewshot": True,
        },
        {
            "task_id": 3,
            "text": "Write a python function to identify non-prime numbers.",
            "code": "import math\r\ndef is_not_prime(n):\r\n    result = False\r\n    for i in range(2,int(math.sqrt(n)) + 1):\r\n        if n % i == 0:\r\n            result = True\r\n    return result",
            "test_list": [
                "assert is_not_prime(2) == False",
                "assert is_not_prime(10) == True",
                "assert is_not_prime(35) == True",
            ],
            "is_fewshot": True,
        },
        {
            "task_id": 4,
            "text": "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
            "code": "import heapq as hq\r\ndef heap_queue_largest(nums,n):\r\n  largest_nums = hq.nlargest(n, nums)\r\n  return largest_nums",
            "test_list": [
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
                "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
            ],
            "is_fewshot": True,
        },
    ]
