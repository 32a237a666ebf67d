// Scores the pair through the JSON API without reloading the page. Without JavaScript the form
// posts to "/" and the server renders the same result.
"use strict";

const form = document.getElementById("pair-form");
const button = document.getElementById("submit");
const result = document.getElementById("result");
const verdict = document.getElementById("verdict");
const score = document.getElementById("score");
const error = document.getElementById("error");

function showError(message) {
  result.hidden = true;
  error.textContent = message;
  error.hidden = false;
}

function showResult(body) {
  error.hidden = true;
  verdict.textContent = body.similar ? result.dataset.similar : result.dataset.different;
  verdict.className = body.similar ? "similar" : "different";
  score.textContent = "유사도 점수: " + body.score.toFixed(2) + " / 5";
  result.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  button.disabled = true;
  try {
    const response = await fetch("/similarity", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        sentence1: form.elements.sentence1.value,
        sentence2: form.elements.sentence2.value,
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      showResult(body);
    } else {
      showError("입력 오류 (" + response.status + "): " + (body.message || response.statusText));
    }
  } catch (err) {
    showError("서버에 연결할 수 없습니다: " + err.message);
  } finally {
    button.disabled = false;
  }
});
