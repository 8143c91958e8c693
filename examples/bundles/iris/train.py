"""Trains a logistic regression on the iris measurements shipped in data/ and hands the
platform an ONNX checkpoint with its test metrics."""

import csv

import numpy as np
from mlplane import train
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

params = train.params()
with open(train.data_dir() / "iris.csv") as fh:
    rows = list(csv.reader(fh))[1:]
table = np.array(rows, dtype=np.float32)
X, y = table[:, :4], table[:, 4].astype(np.int64)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
print(f"training on {len(X_train)} rows with C={params.get('C')}", flush=True)

model = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=int(params.get("max_iter", 300)))
model.fit(X_train, y_train)
predicted = model.predict(X_test)
accuracy = accuracy_score(y_test, predicted)
train.log_metric("accuracy", accuracy)
train.log_metric("f1", f1_score(y_test, predicted, average="macro"))
print(f"test accuracy {accuracy:.3f}", flush=True)

train.save_model(model, X_train[:1], name="iris")
