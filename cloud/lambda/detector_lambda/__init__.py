"""The detector Lambda: Kinesis CloudFrame records -> labels -> S3, DynamoDB, results on SQS, SNS alerts.

This folder (cloud/lambda/detector_lambda) is the function's package, imported one way everywhere:
``import detector_lambda.handler``. In the deployment zip it lies at the root (handler
``detector_lambda.handler.lambda_handler``); on a development machine the project's editable install
maps it (pyproject: package discovery also looks in cloud/lambda). Nothing inserts paths or edits
``sys.modules``.
"""
